"""Regression verdicts: a new run against a baseline, case by case (matched by case_id), metric by
metric.

A change counts only when it is both beyond the threshold (default 5%) in the metric's bad or good
direction and significant, Holm-corrected across every test of the comparison so the chance of any
false alarm in the whole table stays under alpha.

Which test: trials of one run share that run's conditions (thread placement, memory layout, clocks,
neighbours), so runs differ more than trials do: here, identical runs of Gemma 270M differ by up to
11% in decode rate while trials within a run vary by 3%, and two identical runs of Silero VAD gave
latency medians 0.201 and 0.257 ms. A test on trials calls that run-to-run noise significant. So
the run is the unit, and each verdict says what its run-to-run noise came from (`basis`):

- "history": the catalog holds 3 or more earlier runs of the case (on its device: the case id
  names the device): a prediction t-test of the new run's median against their medians;
- "catalog": fewer earlier runs, but the one or two there are spread more than the assumed noise:
  that spread is the run-to-run noise;
- "blocks": the medians of the baseline's time blocks spread more than the assumed noise: a run
  that wanders that far inside itself can start anywhere in that range;
- "assumed": no history to learn from: the run-to-run noise is the stated floor
  (DEFAULT_RUN_NOISE_PCT, --run-noise-pct), and the verdict says so.

Without history, each run's trials are also cut into time blocks, whose medians give the drift
within the run (significance.py); the difference of the two runs is judged against both.
Run-level figures (load time, peak RSS) have one value per run: they are judged only against
history.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from melt import registry
from melt.analysis.busy import DEFAULT_MAX_FOREIGN_CPU_PCT, DEFAULT_MAX_STEAL_PCT, busy_reasons
from melt.analysis.samples import DIRECTION, INFORMATION_ONLY, RUN_LEVEL, samples_of
from melt.analysis.significance import (
    DEFAULT_BLOCKS,
    Difference,
    RunNoise,
    difference_p,
    holm,
    log_spread,
    mcnemar_p,
    paired_p,
    run_level,
    run_level_p,
    run_noise,
)
from melt.results.catalog import Catalog
from melt.results.reader import CaseData, kept_outputs, paired_units, read_run, windowed

DEFAULT_THRESHOLD_PCT = 5.0
DEFAULT_ALPHA = 0.05
# The run-to-run noise assumed without history: the sd of one run's own offset, in % of its level
# (log scale). Measured with `.venv/bin/python benchmarks/compare_noise.py --pairs 20`, which prints
# this sd for every judged metric over its identical runs of recipes/nightly.yaml. On this project's
# 2-core x86 host: Gemma 3 270M decode medians of 21 identical runs spanned 67-78 tok/s (sd ~4%),
# prefill sat in two clusters near 590 and 670 tok/s (~6%); Silero VAD p50 latency spread 3.8% over
# 6 runs (a busy host: `--pairs 5 --seed-runs 0`), though one back-to-back pair gave 0.201 and
# 0.257 ms (+28%). At 10% one pair of runs must differ by beyond -24%/+32% to count alone (so that
# pair does not), and a run that lost 40% of its rate still counts after Holm over the nightly's
# tests. A case noisier than this needs history (3+ runs) or --run-noise-pct.
DEFAULT_RUN_NOISE_PCT = 10.0
VERDICTS = ("worse", "better", "not significant", "inconclusive", "new", "missing", "failed", "untested")


@dataclass(frozen=True)
class MetricVerdict:
    case_id: str
    device: str
    model: str
    label: str
    metric: str
    direction: str
    base_median: float | None
    new_median: float | None
    change_pct: float | None
    p_value: float | None  # Holm-adjusted
    n_base: int
    n_new: int
    verdict: str
    reason: str
    basis: str = ""  # where the run-to-run noise came from: "history", "catalog", "blocks", "assumed" (module doc)
    run_noise_pct: float | None = None  # that run-to-run noise: sd of a run's level, % (log scale)


@dataclass
class Comparison:
    base_runs: list[str]
    new_run: str
    threshold_pct: float
    alpha: float
    verdicts: list[MetricVerdict]
    run_noise_pct: float = DEFAULT_RUN_NOISE_PCT  # assumed where a case has no history
    blocks: int = DEFAULT_BLOCKS

    @property
    def regressed(self) -> bool:
        return any(v.verdict == "worse" for v in self.verdicts)

    @property
    def failed(self) -> bool:
        return any(v.verdict == "failed" for v in self.verdicts)

    def counts(self) -> dict[str, int]:
        return {k: sum(v.verdict == k for v in self.verdicts) for k in VERDICTS}

    def to_json(self) -> dict:
        return {
            "base_runs": self.base_runs,
            "new_run": self.new_run,
            "threshold_pct": self.threshold_pct,
            "alpha": self.alpha,
            "run_noise_pct": self.run_noise_pct,
            "blocks": self.blocks,
            "test": "log scale: a prediction t-test of the run median against >= 3 earlier runs where the catalog "
            "has them (basis history); else a t-test of the two runs' medians against the run-to-run noise (the "
            "largest of run_noise_pct (basis assumed), the spread of 1-2 earlier runs (basis catalog) and the "
            "spread of the baseline's time blocks (basis blocks)) plus the drift within each run (medians of "
            "`blocks` time blocks); Holm-corrected across the comparison",
            "regressed": self.regressed,
            "regressed_cases": sorted({v.case_id for v in self.verdicts if v.verdict == "worse"}),
            "failed": self.failed,
            "counts": self.counts(),
            "verdicts": [asdict(v) for v in self.verdicts],
        }


def load_run(run_dir: Path, manifest: dict | None = None) -> dict[str, CaseData]:
    """Every case of a run folder with its status and per-trial samples (ok cases only), read through
    melt.results.reader (its schema checked: InputError for a newer one); `manifest` is its run.json where
    the caller has read it already."""
    out = {}
    for c in read_run(run_dir, manifest).cases:
        tokens, text = kept_outputs(c.metrics)
        out[c.case_id] = CaseData(
            paired=paired_units(c.metrics),
            paired_unit=windowed(c.metrics),
            shared=_shared(c.case, c.summary) if c.status == "ok" else [],
            run_id=c.run_id,
            case_id=c.case_id,
            device=c.device,
            model=c.model,
            label=c.label,
            status=c.status,
            reason=c.reason,
            # from what the reader read already: no second read of case.json and metrics.json
            samples=samples_of(c.case, c.trials(), c.metrics or {}) if c.status == "ok" and c.case else {},
            outputs=tokens,
            output_text=text,
        )
    return out


def _shared(case: dict, summary: dict) -> list[str]:
    """Why a case's speed figures may be its neighbours' as much as its own: other processes' CPU time or steal
    over the case's limits during its trials (melt.analysis.busy), as its validity said."""
    tele = (case or {}).get("telemetry") or {}
    return busy_reasons(
        summary,
        tele.get("max_foreign_cpu_pct", DEFAULT_MAX_FOREIGN_CPU_PCT),
        tele.get("max_steal_pct", DEFAULT_MAX_STEAL_PCT),
    )


def _inconclusive(row: dict, verdict: str, reason: str) -> tuple[str, str]:
    """A speed change judged on a side melt saw shared with other work is not called: that work, not the build,
    may have made it. Quality figures (the same tokens scored) and output drift are not touched by a neighbour."""
    shared = row.get("shared")
    if verdict not in ("worse", "better") or not shared:
        return verdict, reason
    return "inconclusive", f"would be {verdict} ({reason}), but {shared}: run both on a quiet machine to judge"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _noise_text(row: dict) -> str:
    """What the verdict's run-to-run noise came from, in words."""
    if row["basis"] == "history":
        return f"{row['n_history']} earlier runs"
    if row["basis"] == "paired":
        return f"a paired test over the {row['n_units']} {row['unit']} both runs scored"
    noise: RunNoise = row["noise"]
    if noise.basis == "catalog":
        seen = f"{noise.n_seen} earlier runs of this case on this device"
        return f"the run-to-run noise of {noise.sigma * 100:.3g}% seen in {seen}"
    if noise.basis == "blocks":
        return f"a run-to-run noise of {noise.sigma * 100:.3g}%, the spread of the baseline's own time blocks"
    if noise.floor == 0:
        return "no run-to-run noise (--run-noise-pct 0)"
    return f"an assumed run-to-run noise of {noise.floor * 100:.3g}% (no history)"


def _judged(row: dict, threshold_pct: float, p_adj: float, alpha: float) -> tuple[str, str]:
    change_pct, direction = row["change_pct"], row["direction"]
    against = _noise_text(row)
    if row["basis"] not in ("history", "paired"):
        against += f" and the drift within each run ({row['blocks']} time blocks)"
    worse = change_pct < -threshold_pct if direction == "higher" else change_pct > threshold_pct
    better = change_pct > threshold_pct if direction == "higher" else change_pct < -threshold_pct
    if not (worse or better):
        return "not significant", f"{change_pct:+.1f}% is within ±{threshold_pct:g}%"
    if p_adj >= alpha:
        why = f"{change_pct:+.1f}% but p={p_adj:.3g} (Holm) >= {alpha:g}: within the noise, judged against {against}"
        if row["basis"] not in ("history", "paired"):
            low, high = row["difference"].detectable(alpha)
            why += f"; alone, a change must pass {low:+.0f}% or {high:+.0f}%"
            if row["basis"] == "assumed":
                why += " (keep 3+ runs of history, or set --run-noise-pct)"
        return "not significant", why
    return ("worse" if worse else "better"), f"{change_pct:+.1f}%, p={p_adj:.2g} (Holm), judged against {against}"


QUALITY_UNITS = {m: registry.metric(m).units for m in registry.judged_as("paired")}  # metric -> tokens / items


def _quality_rows(ident: dict, b_cases: list[CaseData], n_case: CaseData | None) -> list[dict]:
    """Quality figures judged unit by unit: the same tokens or items were scored in both runs, so the test is
    paired (a paired t-test of per-token NLL or KL; McNemar's exact test of per-item answers), and the change
    is of the figure itself (perplexity, mean KL, accuracy). Rows only where both sides scored units."""
    base = next((c for c in reversed(b_cases) if c.paired), None)
    if n_case is None or n_case.status != "ok" or not n_case.paired or base is None:
        return []
    rows = []
    for metric in [m for m in QUALITY_UNITS if m in n_case.paired and m in base.paired]:
        b, n = base.paired[metric], n_case.paired[metric]
        row = {**ident, "metric": metric, "direction": registry.metric(metric).direction, "n_base": len(b),
               "n_new": len(n), "change_pct": None, "p_raw": None, "basis": "paired",
               "run_noise_pct": None}  # fmt: skip
        if metric == "ppl":
            row["base_median"], row["new_median"] = math.exp(statistics.fmean(b)), math.exp(statistics.fmean(n))
        elif metric == "kld_mean":
            row["base_median"], row["new_median"] = statistics.fmean(b), statistics.fmean(n)
        else:
            row["base_median"], row["new_median"] = 100 * statistics.fmean(b), 100 * statistics.fmean(n)
        units = (
            base.paired_unit.get(metric, QUALITY_UNITS[metric]),
            n_case.paired_unit.get(metric, QUALITY_UNITS[metric]),
        )
        if units[0] != units[1]:
            why = f"scored per {units[0]} in the baseline and per {units[1]} in the new run: not paired"
            rows.append({**row, "verdict": "untested", "reason": why})
            continue
        if len(b) != len(n):
            why = f"not scored on the same {units[1]} ({len(b)} vs {len(n)})"
            rows.append({**row, "verdict": "untested", "reason": why})
            continue
        p = mcnemar_p(b, n) if metric.startswith("accuracy") else paired_p(b, n)
        if metric == "kld_mean":  # a divergence, 0 for the same model: its change is in nats, not a ratio
            row["absolute"] = f"{row['new_median'] - row['base_median']:+.4g} nats per token"
        elif row["base_median"]:
            row["change_pct"] = (row["new_median"] / row["base_median"] - 1) * 100
        if p is None or (row["change_pct"] is None and "absolute" not in row):
            rows.append({**row, "verdict": "untested", "reason": "too few units, or a baseline of 0"})
            continue
        rows.append({**row, "p_raw": p, "n_units": len(n), "unit": units[1]})
    return rows


def _judged_absolute(row: dict, p_adj: float, alpha: float) -> tuple[str, str]:
    """A paired figure whose change is absolute (KL divergence): judged by its paired test alone."""
    against = _noise_text(row)
    if p_adj >= alpha:
        return "not significant", f"{row['absolute']}, p={p_adj:.3g} (Holm) >= {alpha:g}, judged against {against}"
    up = row["new_median"] > row["base_median"]
    worse = up == (row["direction"] == "lower")
    return ("worse" if worse else "better"), f"{row['absolute']}, p={p_adj:.2g} (Holm), judged against {against}"


def first_divergence(base: list[list[int]], new: list[list[int]]) -> tuple[int, int] | None:
    """(prompt, token) where two runs' greedy outputs first differ, both 0-based; None when they are the same.
    A different number of prompts or tokens differs where the shorter one ends."""
    for p, (a, b) in enumerate(zip(base, new, strict=False)):
        for t, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return p, t
        if len(a) != len(b):
            return p, min(len(a), len(b))
    if len(base) != len(new):
        return min(len(base), len(new)), 0
    return None


def _drift_row(ident: dict, b_cases: list[CaseData], n_case: CaseData | None) -> dict | None:
    """The output-drift verdict of a case (metric "outputs"): None unless both sides kept greedy outputs.
    A greedy output that changed is judged worse: the same model, params and prompts wrote something else."""
    base = next((c for c in reversed(b_cases) if c.outputs is not None), None)
    if n_case is None or n_case.status != "ok" or n_case.outputs is None or base is None:
        return None
    row = {**ident, "metric": "outputs", "direction": "", "base_median": None, "new_median": None,
           "n_base": len(base.outputs), "n_new": len(n_case.outputs), "change_pct": None, "p_raw": None,
           "basis": "", "run_noise_pct": None}  # fmt: skip
    where = first_divergence(base.outputs, n_case.outputs)
    if where is None:
        n_tokens = sum(len(o) for o in n_case.outputs)
        why = f"greedy outputs identical to the baseline's ({len(n_case.outputs)} prompts, {n_tokens} tokens)"
        return {**row, "verdict": "not significant", "reason": why}
    p, t = where

    def said(case: CaseData) -> str:
        tokens = case.outputs[p] if p < len(case.outputs) else []
        text = case.output_text[p] if case.output_text and p < len(case.output_text) else ""
        return f"token {tokens[t] if t < len(tokens) else 'none'}, writing {text[:60]!r}"

    reason = (
        f"greedy output drifted: prompt {p + 1} first differs at token {t + 1} (baseline {said(base)}; "
        f"new {said(n_case)})"
    )
    return {**row, "verdict": "worse", "reason": reason}


def _levels(cases: list[CaseData], metric: str, blocks: int) -> list:
    return [level for c in cases if (level := run_level(c.samples.get(metric, []), blocks))]


def compare(
    base: dict[str, list[CaseData]],
    new: dict[str, CaseData],
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    base_runs: list[str] | None = None,
    new_run: str = "",
    history: dict[str, dict[str, list[float]]] | None = None,
    run_noise_pct: float = DEFAULT_RUN_NOISE_PCT,
    blocks: int = DEFAULT_BLOCKS,
) -> Comparison:
    """base: case_id -> the baseline runs of that case (one, or a window of the last N); the base
    median is the median of their medians. history: case_id -> metric -> medians of earlier runs
    (the catalog's, the baseline's among them; where absent, the baseline runs' own medians).
    With 3 or more the test is on runs against them; else on the two sides' run medians against
    the larger of run_noise_pct (%, the sd of a run's own offset) and the earlier runs' spread,
    plus the drift within each run from `blocks` time blocks of its trials."""
    history = history or {}
    pending: list[dict] = []
    for case_id in sorted(set(base) | set(new), key=lambda c: _order_key(c, base, new)):
        n_case = new.get(case_id)
        b_cases = [c for c in base.get(case_id, []) if c.status == "ok"]
        ref = n_case or (base.get(case_id) or [None])[0]
        ident = {"case_id": case_id, "device": ref.device, "model": ref.model, "label": ref.label}
        metrics = sorted({m for c in b_cases for m in c.samples} | set(n_case.samples if n_case else {}))
        metrics = [m for m in metrics if m in DIRECTION] or ["-"]
        for metric in metrics:
            row = {**ident, "metric": metric, "direction": DIRECTION.get(metric, "")}
            b_samples = [s for c in b_cases for s in c.samples.get(metric, [])]
            b_medians = [_median(c.samples[metric]) for c in b_cases if c.samples.get(metric)]
            n_samples = n_case.samples.get(metric, []) if n_case else []
            row.update(base_median=_median(b_medians), new_median=_median(n_samples), n_base=len(b_samples))
            row.update(n_new=len(n_samples), change_pct=None, p_raw=None, basis="", run_noise_pct=None)
            if n_case is None:
                row.update(verdict="missing", reason="in the baseline, not in the new run")
            elif n_case.status != "ok":
                row.update(verdict="failed", reason=n_case.reason or n_case.status)
            elif not b_cases:
                why = "not in the baseline" if case_id not in base else "failed in every baseline run"
                row.update(verdict="new", reason=why)
            elif row["base_median"] is None or row["new_median"] is None:
                side = "baseline" if row["base_median"] is None else "new run"
                row.update(verdict="untested", reason=f"not measured in the {side}")
            else:
                if row["base_median"] != 0:
                    row["change_pct"] = (row["new_median"] / row["base_median"] - 1) * 100
                earlier = history.get(case_id, {}).get(metric) or b_medians
                p_runs = run_level_p(earlier, row["new_median"])
                if row["change_pct"] is None:
                    row.update(verdict="untested", reason="baseline median is 0")
                elif metric in INFORMATION_ONLY:
                    why = (
                        "a roofline figure: derived from the judged speed figures and the device's bandwidth"
                        if registry.metric(metric).source == "roofline"
                        else "too noisy from run to run to judge"
                    )
                    row.update(verdict="untested", reason=f"shown for information: {why}")
                elif p_runs is not None:
                    row.update(p_raw=p_runs, basis="history", n_history=len(earlier))
                    row["shared"] = _sides_shared(b_cases, n_case)
                    row["run_noise_pct"] = log_spread(earlier) * 100
                elif metric in RUN_LEVEL:
                    row.update(verdict="untested", reason="one value per run: judged only against 3+ earlier runs")
                else:
                    b_levels, n_level = _levels(b_cases, metric, blocks), run_level(n_samples, blocks)
                    if not b_levels or n_level is None:
                        why = "fewer than 2 trials on a side, or a value that is not positive (no ratio to judge)"
                        row.update(verdict="untested", reason=why)
                    else:
                        row["shared"] = _sides_shared(b_cases, n_case)
                        noise = run_noise(run_noise_pct / 100, earlier, b_levels)
                        diff: Difference = difference_p(b_levels, n_level, noise.sigma)
                        row.update(p_raw=diff.p, basis=noise.basis, run_noise_pct=noise.sigma * 100)
                        row.update(noise=noise, difference=diff, blocks=n_level.blocks)
            pending.append(row)
        drift = _drift_row(ident, b_cases, n_case)
        if drift:
            pending.append(drift)
        pending += _quality_rows(ident, b_cases, n_case)
    adjusted = holm([r["p_raw"] for r in pending])
    verdicts = []
    for row, p_adj in zip(pending, adjusted):
        if p_adj is not None and "absolute" in row:
            verdict, reason = _judged_absolute(row, p_adj, alpha)
            row.update(verdict=verdict, reason=reason)
        elif p_adj is not None:
            verdict, reason = _inconclusive(row, *_judged(row, threshold_pct, p_adj, alpha))
            row.update(verdict=verdict, reason=reason)
        for key in ("p_raw", "n_history", "noise", "difference", "blocks", "n_units", "unit", "absolute", "shared"):
            row.pop(key, None)
        verdicts.append(MetricVerdict(**row, p_value=p_adj))
    runs = base_runs or sorted({c.run_id for cs in base.values() for c in cs})
    return Comparison(runs, new_run, threshold_pct, alpha, verdicts, run_noise_pct, blocks)


def _sides_shared(b_cases: list[CaseData], n_case: CaseData) -> str:
    """Which side of a comparison melt saw shared with other work, and how, in words ("" for neither)."""
    said = [f"the new run: {'; '.join(n_case.shared)}"] if n_case.shared else []
    said += [f"baseline {c.run_id}: {'; '.join(c.shared)}" for c in b_cases if c.shared]
    return "melt saw the machine shared during the trials (" + " / ".join(said) + ")" if said else ""


def _order_key(case_id: str, base: dict, new: dict) -> tuple:
    c = new.get(case_id) or base[case_id][0]
    return (c.device, c.label, case_id)


def run_history(results_dir: Path, new_manifest: dict, base: dict[str, list[CaseData]]) -> dict:
    """Medians of the earlier runs of NEW's cases, from the catalog of results_dir, plus the
    baseline runs themselves where the catalog lacks them."""
    with Catalog.open(Path(results_dir)) as catalog:
        history = catalog.run_history(
            list(new_manifest.get("cases", {})), new_manifest.get("started_at"), new_manifest.get("run_id")
        )
        known = catalog.run_ids()
    for case_id, runs in base.items():
        for c in runs:
            if c.status == "ok" and c.run_id not in known and c.run_id != new_manifest.get("run_id"):
                for metric, values in c.samples.items():
                    history.setdefault(case_id, {}).setdefault(metric, []).append(statistics.median(values))
    return history


def compare_runs(
    base_run_dir: Path,
    new_run_dir: Path,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    results_dir: Path | None = None,
    use_history: bool = True,
    run_noise_pct: float = DEFAULT_RUN_NOISE_PCT,
) -> Comparison:
    """BASE run folder against NEW run folder; run-to-run noise from the run history in the catalog
    of results_dir (default: the folder holding NEW), else run_noise_pct (see `compare`).
    use_history=False: as if the catalog were empty."""
    base_manifest, new_manifest = read_run(base_run_dir).manifest, read_run(new_run_dir).manifest
    base = {k: [v] for k, v in load_run(base_run_dir, base_manifest).items()}
    new = load_run(new_run_dir, new_manifest)
    base_id = base_manifest.get("run_id", Path(base_run_dir).name)
    new_id = new_manifest.get("run_id", Path(new_run_dir).name)
    history = {}
    if use_history:
        history = run_history(results_dir or Path(new_run_dir).parent, new_manifest, base)
    return compare(base, new, threshold_pct, alpha, [base_id], new_id, history, run_noise_pct)
