"""Several runs side by side: each later run against the first, case by case, with the verdicts
`melt compare` gives (melt.analysis.compare), so the page and the CI gate never disagree."""

from __future__ import annotations

from pathlib import Path

from melt import registry
from melt.report.table import fmt

# the judged figures (speed, then quality judged unit by unit), then the greedy-output drift (melt.analysis.compare)
ORDER = [*registry.compare_order(), "outputs"]
TITLES = {**{m: registry.metric(m).heading for m in ORDER if m != "outputs"}, "outputs": "greedy outputs"}
# the verdict a row is sorted and coloured by: the most alarming of its cells
SEVERITY = ["worse", "failed", "missing", "inconclusive", "better", "new", "not significant", "untested"]


def pair(base_dir: Path, new_dir: Path, threshold_pct: float) -> dict:
    """One comparison for the page: counts, and rows of cells per case."""
    try:
        from melt.analysis.compare import compare_runs
        from melt.report.verdicts import basis_summary
    except ImportError as e:  # the comparison module is optional for a one-run report
        return {"error": f"melt compare is not available: {e}"}
    cmp = compare_runs(base_dir, new_dir, threshold_pct=threshold_pct)
    rows: dict[str, dict] = {}
    for v in cmp.verdicts:
        row = rows.setdefault(
            v.case_id, {"case_id": v.case_id, "device": v.device, "label": v.label, "cells": {}, "row_verdict": None}
        )
        if v.metric == "-" or v.verdict in ("new", "missing", "failed") and v.metric not in ORDER:
            row["row_verdict"] = {"verdict": v.verdict, "reason": v.reason}
            continue
        row["cells"][v.metric] = {
            "base": fmt(v.base_median),
            "new": fmt(v.new_median),
            "change": "" if v.change_pct is None else f"{v.change_pct:+.1f}%",
            "change_pct": v.change_pct,
            "verdict": v.verdict,
            "title": f"{v.verdict}: {v.reason}"
            + (f" · p={v.p_value:.2g}" if v.p_value is not None else "")
            + f" · {v.n_base} vs {v.n_new} samples · {v.direction} is better",
        }
    metrics = [m for m in ORDER if any(m in r["cells"] for r in rows.values())]
    for row in rows.values():
        verdicts = [c["verdict"] for c in row["cells"].values()]
        if row["row_verdict"]:
            verdicts.append(row["row_verdict"]["verdict"])
        row["worst"] = min(verdicts, key=SEVERITY.index) if verdicts else "untested"
    counts = {k: n for k, n in cmp.counts().items() if n}
    return {
        "base": cmp.base_runs[0] if cmp.base_runs else base_dir.name,
        "new": cmp.new_run or new_dir.name,
        "threshold_pct": threshold_pct,
        "noise": "run-to-run noise from " + basis_summary(cmp),  # what the verdicts were judged against
        "regressed": cmp.regressed,
        # the headline `melt compare` exits 1 on: a significant regression, or a failed case
        "state": "regression" if cmp.regressed else ("failed cases" if cmp.failed else "no regression"),
        "counts": counts,
        "metrics": [(m, TITLES.get(m, m)) for m in metrics],
        "rows": list(rows.values()),
    }
