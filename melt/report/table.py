"""The comparison table: one row per case (per run), the key figures with units and spread, and for
every empty cell the reason it is empty. Cells carry a sort value; the page sorts and filters."""

from __future__ import annotations

from dataclasses import dataclass

from melt import registry
from melt.report.data import CaseView

# metric, column title, unit: the registry's table metrics, in summary.csv order
COLUMNS = [(m.name, m.title, m.unit) for m in registry.METRICS if m.table]
NOT_APPLICABLE = "not applicable"


def fmt(value: float | None) -> str:
    """3-4 significant digits without exponents: 12,345 · 123.4 · 12.34 · 1.234 · 0.01234."""
    if value is None:
        return "—"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.1f}"
    if a >= 10:
        return f"{value:.2f}"
    if a >= 1:
        return f"{value:.3f}"
    return f"{value:.3g}"


@dataclass
class Cell:
    text: str
    sort: float | str | None = None
    sub: str = ""  # spread, under the figure
    why: str = ""  # a missing figure's reason (hover)
    kind: str = "num"  # num | missing | na | flag


def _cell(c: CaseView, metric: str) -> Cell:
    if c.status != "ok":
        return Cell("—", None, why=c.why_missing(metric), kind="missing")
    raw = c.summary.get(metric)
    if metric == "throttled":
        if raw is None:
            return Cell("—", None, why=c.why_missing(metric), kind="missing")
        reasons = (c.metrics or {}).get("telemetry", {}).get("throttle_reasons", [])
        return Cell("yes" if raw else "no", int(raw), why="; ".join(reasons), kind="flag-yes" if raw else "flag")
    value = c.value(metric)
    if value is None:
        why = c.why_missing(metric)
        if why.startswith(NOT_APPLICABLE):
            return Cell("", None, why=why, kind="na")
        return Cell("—", None, why=why, kind="missing")
    sub = ""
    spread = c.j_per_token_spread() if metric == "j_per_token" else c.spread(metric)
    if spread and spread.get("p10") is not None and metric not in ("itl_p50_ms",):
        sub = f"{fmt(spread['p10'])}–{fmt(spread['p90'])}"
    if metric == "power_avg_w":
        sub = c.summary.get("power_method") or ""
    return Cell(fmt(value), value, sub=sub)


@dataclass
class Table:
    columns: list[tuple[str, str, str]]
    rows: list[dict]
    hidden: list[dict]  # columns left out because no row has the figure: [{"title", "reasons"}]


def build(cases: list[CaseView], with_run: bool) -> Table:
    cells = {id(c): {m: _cell(c, m) for m, _, _ in COLUMNS} for c in cases}
    shown, hidden = [], []
    for metric, title, unit in COLUMNS:
        column = [cells[id(c)][metric] for c in cases]
        if any(cell.kind not in ("missing", "na") for cell in column):
            shown.append((metric, title, unit))
            continue
        reasons = sorted({cell.why for cell in column if cell.kind == "missing" and cell.why})
        if reasons:  # measurable but measured nowhere: say why once, under the table
            hidden.append({"title": f"{title} ({unit})" if unit else title, "reasons": reasons})
    rows = []
    for c in cases:
        rows.append(
            {
                "run": c.run_id if with_run else None,
                "case_id": c.case_id,
                "device": c.device,
                "model": c.model,
                "runtime": c.runtime,
                "params": c.params_text,
                "validity": c.validity,
                "reasons": c.validity_reasons,
                "cells": [cells[id(c)][m] for m, _, _ in shown],
            }
        )
    return Table(shown, rows, hidden)
