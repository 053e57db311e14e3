"""The report's quality section: how good each case's model is beside how fast and how costly it runs.

Figures, where cases measured quality (recipe `quality`): quality against decode speed and against energy per
token, each with its Pareto front; and quality per joule, accuracy / energy per query as "Intelligence per
Watt" (Saad-Falcon et al., 2025) defines it: the share of tasks answered right over the joules one request
took (here energy_j, the median request's energy, idle baseline subtracted).
Quality is accuracy (higher is better) where a case has it, else perplexity (lower is better).
"""

from __future__ import annotations

from melt.report.data import CaseView
from melt.report.figures import (
    LLM_RUNTIMES,
    Figure,
    Scope,
    Section,
    axis,
    front_trace,
    hbar_height,
    layout,
    missing_notes,
    pareto_front,
)


def _measure(cases: list[CaseView]) -> tuple[str, str, bool] | None:
    """(metric, axis title, higher is better) of the quality figure the cases have, accuracy first."""
    if any(c.value("accuracy_pct") is not None for c in cases):
        return "accuracy_pct", "accuracy (%) — higher is better", True
    if any(c.value("accuracy_tok_pct") is not None for c in cases):  # phones: llama-perplexity's own scoring
        return "accuracy_tok_pct", "accuracy per token (%) — higher is better", True
    if any(c.value("ppl") is not None for c in cases):
        return "ppl", "perplexity — lower is better", False
    return None


def _against(cases: list[CaseView], scope: Scope, key: str, x_metric: str, x_title: str, x_higher: bool,
             quality: tuple[str, str, bool], caption: str) -> Figure:  # fmt: skip
    metric, y_title, y_higher = quality
    points = [(c.value(x_metric), c.value(metric)) for c in cases]
    on_front = pareto_front(points, x_higher, y_higher)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": series,
            "x": [c.value(x_metric) for c in group],
            "y": [c.value(metric) for c in group],
            "text": [c.label for c in group],
            "marker": {"color": scope.color(series), "size": 10, "opacity": 0.85},
            "hovertemplate": "%{text}<br>%{x:.4g}<br>%{y:.4g}<extra>" + series + "</extra>",
        }
        for series, group in scope.grouped(cases).items()
    ]
    data.append(front_trace(points, [c.label for c in cases], on_front))
    fig = {"data": data, "layout": layout(xaxis=axis(x_title), yaxis=axis(y_title))}
    return Figure(key, key.replace("quality_", "quality vs "), fig, caption)


def quality(cases: list[CaseView], scope: Scope) -> Section:
    section = Section("quality", "Quality beside speed and energy")
    llm = [c for c in cases if c.status == "ok" and c.runtime in LLM_RUNTIMES]
    measure = _measure(llm)
    if measure is None:
        section.empty = "no case measured quality (recipe quality.perplexity or quality.choices)"
        return section
    metric = measure[0]
    section.notes = missing_notes(llm, [metric], scope)
    rated = [c for c in llm if c.value(metric) is not None]
    fast = [c for c in rated if c.value("decode_tok_s") is not None]
    if fast:
        section.figures.append(
            _against(
                fast,
                scope,
                "quality_speed",
                "decode_tok_s",
                "decode (tok/s) — higher is better",
                True,
                measure,
                "Each case's quality against its decode speed; circled cases are on the Pareto "
                "front (no other case is both faster and better).",
            )  # fmt: skip
        )
    costed = [c for c in rated if c.value("j_per_token") is not None]
    if costed:
        section.figures.append(
            _against(
                costed,
                scope,
                "quality_energy",
                "j_per_token",
                "decode energy (J/token) — lower is better",
                False,
                measure,
                "Each case's quality against its decode energy per token, idle baseline "
                "subtracted; circled cases are on the Pareto front.",
            )  # fmt: skip
        )
    per_joule = [c for c in rated if metric.startswith("accuracy") and c.value("energy_j")]
    if per_joule:
        values = [c.value(metric) / 100 / c.value("energy_j") for c in per_joule]
        data = [
            {
                "type": "bar",
                "orientation": "h",
                "name": series,
                "y": [c.label for c in group],
                "x": [values[per_joule.index(c)] for c in group],
                "marker": {"color": scope.color(series)},
                "hovertemplate": "%{y}<br>%{x:.4g} per J<extra>" + series + "</extra>",
            }
            for series, group in scope.grouped(per_joule).items()
        ]
        fig = {
            "data": data,
            "layout": layout(height=hbar_height(scope, per_joule), xaxis=axis("accuracy per joule (1/J)")),
        }
        section.figures.append(
            Figure(
                "quality_per_joule",
                "quality per joule",
                fig,
                "Accuracy (share of tasks answered right) over the energy of one request (energy_j, idle "
                "baseline subtracted): quality per joule, as Intelligence per Watt (2025) defines it.",
            )  # fmt: skip
        )
    if not section.figures:
        section.empty = "quality was measured, but no case has a decode rate or an energy figure to set it against"
    return section
