"""Is a run's level different from a baseline's, beyond the noise between runs? The statistics of
`melt compare`, on the log scale (changes are ratios), with scipy.stats for the distributions.

Model (a random-effects view): the log of one trial of run r is  level + u_r + w_rt,  where u_r is
the run's own offset (thread placement, memory layout, clocks, neighbours: fixed for the run,
different at each start) with sd sigma_run, and w_rt the noise within the run, which drifts slowly
(trials next to each other are alike, so trials are not independent samples of the run). Two
estimates, two sources:

- within a run: the run's counted trials, in time order, are cut into k consecutive blocks; the
  spread of the block medians is what drift inside the run does to the run's median, and gives
  its standard error, sd(block medians) / sqrt(k), with k - 1 degrees of freedom;
- between runs: u_r is invisible inside one run (every block shares it). It is taken from earlier
  runs of the case (3 or more: `run_level_p`, a prediction t-test on run medians), else from a
  stated run-to-run noise: an assumed floor, raised where the one or two earlier runs there are
  spread more, or where the baseline's own blocks do (a run that wanders that far inside itself
  can start anywhere in that range) (`run_noise`). The blocks alone under-estimate it: a run's
  start state (placement, layout) is shared by all its blocks, hence the floor.

The difference of two run medians then has variance  sigma_run^2 (1 + 1/B) + se_new^2 + se_base^2 / B
(B baseline runs), tested with Student's t on Welch-Satterthwaite degrees of freedom (the assumed
sigma_run counts as known). Holm's step-down correction keeps the chance of any false alarm
across a whole comparison under alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_BLOCKS = 10  # time blocks per run: 10 trials of an LLM case are 10 blocks of one trial


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and does not count in the family)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p of Student's t with df degrees of freedom (df = inf: the normal)."""
    return float(2 * stats.t.sf(abs(t), df))


def log_spread(medians: Sequence[float]) -> float | None:
    """Sample sd (n - 1) of the logs of run medians: the run-to-run noise they show, as a fraction
    (0.05 ~ 5%). None with fewer than 2 medians or one that is not positive."""
    if len(medians) < 2 or any(m <= 0 for m in medians):
        return None
    return float(np.std(np.log(medians), ddof=1))


def run_level_p(history: Sequence[float], new: float) -> float | None:
    """Is `new` (one run's median) from the population of earlier runs' medians? A prediction
    t-test on the log scale: t = (ln new - mean) / (sd * sqrt(1 + 1/n)), n - 1 degrees of freedom.
    None with fewer than 3 earlier runs, a value that is not positive, or no spread among them."""
    if len(history) < 3 or new <= 0:
        return None
    sd = log_spread(history)
    if not sd:
        return None
    n = len(history)
    t = (math.log(new) - float(np.mean(np.log(history)))) / (sd * math.sqrt(1 + 1 / n))
    return t_two_sided_p(t, n - 1)


@dataclass(frozen=True)
class RunLevel:
    """One run of one metric: the log of its median, and what drift within the run makes of it."""

    log_median: float
    se: float  # standard error of log_median from the spread of block medians (log scale)
    blocks: int  # k: consecutive time blocks of the run's trials
    spread: float  # robust sd of the log block medians: 1.4826 * MAD (one slow trial does not move it)


def run_level(values: Sequence[float], blocks: int = DEFAULT_BLOCKS) -> RunLevel | None:
    """values: one run's per-trial samples IN TIME ORDER (positive; any unit). Cut into
    min(blocks, n) consecutive blocks of near-equal size; se = sd(log block medians) / sqrt(k), the
    standard error of the run's median when blocks hold many trials. When every block is a single
    trial the run's median is the median of k values, and se is sqrt(pi / 2) times that (the
    asymptotic efficiency of a median against a mean, normal case). None with fewer than 2 values
    or one that is not positive (no ratio to judge)."""
    if len(values) < 2 or min(values) <= 0:
        return None
    logs = np.log(np.asarray(values, dtype=float))
    k = min(blocks, len(logs))
    block_medians = [float(np.median(b)) for b in np.array_split(logs, k)]
    se = float(np.std(block_medians, ddof=1) / math.sqrt(k))
    if k == len(logs):
        se *= math.sqrt(math.pi / 2)
    spread = float(stats.median_abs_deviation(block_medians, scale="normal"))
    return RunLevel(float(np.median(logs)), se, k, spread)


@dataclass(frozen=True)
class RunNoise:
    """The run-to-run noise a comparison without 3+ earlier runs is judged against."""

    sigma: float  # sd of a run's own offset, log scale (0.10 ~ 10%): the largest of the three below
    basis: str  # which it is: "assumed" (the floor), "catalog" (earlier runs), "blocks" (the baseline's blocks)
    floor: float  # the assumed run-to-run noise (--run-noise-pct / 100)
    seen: float | None  # the spread of the earlier runs, where there are 2 or more
    n_seen: int  # earlier runs looked at
    blocks: float  # the baseline runs' block spread (root mean square over the runs)


def run_noise(floor: float, earlier: Sequence[float], base: Sequence[RunLevel] = ()) -> RunNoise:
    """floor: assumed sd of a run's offset (fraction, >= 0); earlier: medians of the case's earlier
    runs (the baseline's among them); base: the baseline runs' levels. With one pair of runs nothing
    says how far runs of this case wander, so the floor is an assumption the verdict states. The
    spread of 2 earlier runs (one degree of freedom), or of the baseline's time blocks, may raise
    it (a case seen to wander more), never lower it. The run under test does not set its own
    yardstick: a change that makes a run erratic must not excuse itself."""
    seen = log_spread(earlier)
    blocks = math.sqrt(sum(b.spread**2 for b in base) / len(base)) if base else 0.0
    sigma, basis = max((floor, "assumed"), (seen or 0.0, "catalog"), (blocks, "blocks"), key=lambda c: c[0])
    return RunNoise(sigma, basis, floor, seen, len(earlier), blocks)


@dataclass(frozen=True)
class Difference:
    """A run against baseline runs: the test and what it was made of."""

    p: float
    log_diff: float  # ln(new median / base median)
    sd: float  # standard error of log_diff: run-to-run noise and drift within the runs
    df: float  # Welch-Satterthwaite degrees of freedom (inf when the run-to-run term dominates)

    def detectable(self, alpha: float) -> tuple[float, float]:
        """The smallest decrease and increase, in %, this test alone calls significant at alpha."""
        reach = float(stats.t.ppf(1 - alpha / 2, self.df)) * self.sd
        return (math.expm1(-reach) * 100, math.expm1(reach) * 100)


def difference_p(base: Sequence[RunLevel], new: RunLevel, sigma_run: float) -> Difference:
    """base: the baseline runs' levels (B >= 1); new: the new run's; sigma_run: sd of a run's own
    offset (log scale). Base level: the median of the base runs' log medians. Two-sided t test of
    ln(new) - ln(base) against sqrt(sigma_run^2 (1 + 1/B) + se_new^2 + mean(se_base^2) / B)."""
    n_base = len(base)
    log_diff = new.log_median - float(np.median([b.log_median for b in base]))
    within = [(new.se**2, new.blocks - 1)] + [(b.se**2 / n_base**2, b.blocks - 1) for b in base]
    var = sigma_run**2 * (1 + 1 / n_base) + sum(v for v, _ in within)
    if var <= 0:  # no noise anywhere (constant values, --run-noise-pct 0): exact
        return Difference(1.0 if log_diff == 0 else 0.0, log_diff, 0.0, math.inf)
    # Welch-Satterthwaite; the run-to-run term is stated, not estimated: it adds no uncertainty
    spread = sum(v * v / df for v, df in within if df > 0)
    df = var * var / spread if spread > 0 else math.inf
    sd = math.sqrt(var)
    return Difference(t_two_sided_p(log_diff / sd, df), log_diff, sd, df)


def paired_p(base: Sequence[float], new: Sequence[float]) -> float | None:
    """Two-sided p of a paired t-test (scipy.stats.ttest_rel) of two runs' values of the same units (the same
    scored tokens, say); 1.0 where every pair is equal (nothing changed), None under two pairs. The units'
    differences are the samples, so the test asks whether the mean difference is 0."""
    if len(base) != len(new) or len(base) < 2:
        return None
    diffs = [b - a for a, b in zip(base, new, strict=True)]
    if all(d == 0 for d in diffs):
        return 1.0
    if len(set(diffs)) == 1:  # one and the same shift everywhere: no spread, certainly not chance
        return 0.0
    return float(stats.ttest_rel(new, base).pvalue)


def mcnemar_p(base: Sequence[bool], new: Sequence[bool]) -> float | None:
    """Two-sided p of McNemar's exact test (a binomial test of the discordant pairs, scipy.stats.binomtest) of
    two runs' right/wrong answers to the same items; 1.0 without discordant pairs, None without items."""
    if len(base) != len(new) or not base:
        return None
    worse = sum(1 for a, b in zip(base, new, strict=True) if a and not b)
    better = sum(1 for a, b in zip(base, new, strict=True) if b and not a)
    if worse + better == 0:
        return 1.0
    return float(stats.binomtest(better, worse + better, 0.5).pvalue)
