"""Regression verdicts: a new run against a baseline, case by case (matched by case_id), metric by
metric, on the raw per-trial samples.

A change counts only when it is both beyond the threshold (default 5%) in the metric's bad or good
direction and significant: two-sided Mann-Whitney U on the trial samples, Holm-corrected across
every test of the comparison so the chance of any false alarm in the whole table stays under
alpha. Run-level figures (load time, peak RSS) have one value per run: their change is shown,
never judged.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from melt.analysis.samples import DIRECTION, RUN_LEVEL, case_samples
from melt.analysis.significance import holm, mann_whitney_p, min_p
from melt.results.layout import RunDir

DEFAULT_THRESHOLD_PCT = 5.0
DEFAULT_ALPHA = 0.05
VERDICTS = ("worse", "better", "not significant", "new", "missing", "failed", "untested")


@dataclass(frozen=True)
class CaseData:
    """One case of one run: what it is, how it ended, its per-trial samples."""

    run_id: str
    case_id: str
    device: str
    model: str
    label: str
    status: str
    reason: str | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)


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


@dataclass
class Comparison:
    base_runs: list[str]
    new_run: str
    threshold_pct: float
    alpha: float
    verdicts: list[MetricVerdict]

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
            "test": "two-sided Mann-Whitney U on per-trial samples, Holm-corrected across the comparison",
            "regressed": self.regressed,
            "failed": self.failed,
            "counts": self.counts(),
            "verdicts": [asdict(v) for v in self.verdicts],
        }


def load_run(run_dir: Path) -> dict[str, CaseData]:
    """Every case of a run folder with its status and per-trial samples (ok cases only)."""
    run = RunDir(run_dir)
    manifest = run.read()
    out = {}
    for case_id, entry in manifest.get("cases", {}).items():
        samples = {}
        if entry["status"] == "ok" and (run.case_dir(case_id) / "case.json").is_file():
            samples = case_samples(run.case_dir(case_id))
        out[case_id] = CaseData(
            run_id=manifest.get("run_id", run.path.name),
            case_id=case_id,
            device=entry.get("device", ""),
            model=entry.get("model", ""),
            label=entry.get("label", case_id),
            status=entry["status"],
            reason=entry.get("reason"),
            samples=samples,
        )
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _judged(
    change_pct: float, direction: str, threshold_pct: float, p_adj: float, alpha: float, n: tuple[int, int]
) -> tuple[str, str]:
    worse = change_pct < -threshold_pct if direction == "higher" else change_pct > threshold_pct
    better = change_pct > threshold_pct if direction == "higher" else change_pct < -threshold_pct
    if not (worse or better):
        return "not significant", f"{change_pct:+.1f}% is within ±{threshold_pct:g}%"
    if p_adj >= alpha:
        floor = min_p(*n)
        why = f"{change_pct:+.1f}% but p={p_adj:.3g} (Holm) >= {alpha:g}"
        if floor >= alpha:
            why += f"; {n[0]} vs {n[1]} trials can never reach it (smallest p {floor:.3g}): use more repetitions"
        return "not significant", why
    return ("worse" if worse else "better"), f"{change_pct:+.1f}%, p={p_adj:.2g} (Holm)"


def compare(
    base: dict[str, list[CaseData]],
    new: dict[str, CaseData],
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    base_runs: list[str] | None = None,
    new_run: str = "",
) -> Comparison:
    """base: case_id -> the baseline runs of that case (one, or a window of the last N).
    The base median is the median of the runs' medians; the test pools their trials."""
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
            b_median = _median([_median(c.samples[metric]) for c in b_cases if c.samples.get(metric)])
            n_samples = n_case.samples.get(metric, []) if n_case else []
            row.update(base_median=b_median, new_median=_median(n_samples), n_base=len(b_samples))
            row.update(n_new=len(n_samples), change_pct=None, p_raw=None)
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
                if metric in RUN_LEVEL:
                    row.update(verdict="untested", reason="one value per run: shown, not tested")
                elif row["change_pct"] is None:
                    row.update(verdict="untested", reason="baseline median is 0")
                else:
                    row["p_raw"] = mann_whitney_p(b_samples, n_samples)
                    if row["p_raw"] is None:
                        row.update(verdict="untested", reason="fewer than 2 trials on a side")
            pending.append(row)
    adjusted = holm([r["p_raw"] for r in pending])
    verdicts = []
    for row, p_adj in zip(pending, adjusted):
        if p_adj is not None:
            verdict, reason = _judged(
                row["change_pct"], row["direction"], threshold_pct, p_adj, alpha, (row["n_base"], row["n_new"])
            )
            row.update(verdict=verdict, reason=reason)
        row.pop("p_raw")
        verdicts.append(MetricVerdict(**row, p_value=p_adj))
    runs = base_runs or sorted({c.run_id for cs in base.values() for c in cs})
    return Comparison(runs, new_run, threshold_pct, alpha, verdicts)


def _order_key(case_id: str, base: dict, new: dict) -> tuple:
    c = new.get(case_id) or base[case_id][0]
    return (c.device, c.label, case_id)


def compare_runs(
    base_run_dir: Path,
    new_run_dir: Path,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """BASE run folder against NEW run folder."""
    base = load_run(base_run_dir)
    new = load_run(new_run_dir)
    base_id = next(iter(base.values())).run_id if base else Path(base_run_dir).name
    new_id = next(iter(new.values())).run_id if new else Path(new_run_dir).name
    return compare({k: [v] for k, v in base.items()}, new, threshold_pct, alpha, [base_id], new_id)
