"""Plotly figure specs (plain dicts: data + layout) for the report's sections, from the cases.

Every section builder returns a Section: its figures, or the reason there is nothing to plot, plus
notes naming the cases whose figure is missing and why (a missing figure is never drawn as zero).
Spread is always shown: error bars are p10-p90 over counted trials unless a caption says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from melt.report.data import CaseView

PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#dc2626", "#ca8a04", "#db2777", "#475569", "#65a30d"]
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', sans-serif"
AXIS = {"gridcolor": "#e5e7eb", "zerolinecolor": "#cbd5e1", "linecolor": "#94a3b8", "automargin": True}
LLM_RUNTIMES = ("llama_cpp", "llama_cpp_cli")


@dataclass
class Figure:
    key: str
    title: str
    fig: dict
    caption: str = ""


@dataclass
class Section:
    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    empty: str | None = None  # why nothing is plotted
    notes: list[dict] = field(default_factory=list)  # [{"reason", "cases": [...]}]
    tables: list[dict] = field(default_factory=list)  # [{"key", "caption", "columns": [str], "rows": [[str]]}]


class Scope:
    """How cases are told apart in legends: by run when there are several, by device when several."""

    def __init__(self, cases: list[CaseView]):
        self.multi_run = len({c.run_id for c in cases}) > 1
        self.multi_device = len({c.device for c in cases}) > 1
        self._colors: dict[str, str] = {}
        for c in cases:
            self.color(self.series(c))

    def series(self, c: CaseView) -> str:
        parts = [c.run_id] if self.multi_run else []
        if self.multi_device or not self.multi_run:
            parts.append(c.device)
        return " · ".join(parts)

    def color(self, series: str) -> str:
        if series not in self._colors:
            self._colors[series] = PALETTE[len(self._colors) % len(PALETTE)]
        return self._colors[series]

    def grouped(self, cases: list[CaseView]) -> dict[str, list[CaseView]]:
        out: dict[str, list[CaseView]] = {}
        for c in cases:
            out.setdefault(self.series(c), []).append(c)
        return out


def layout(**extra) -> dict:
    base = {
        "font": {"family": FONT, "size": 12, "color": "#1e293b"},
        "margin": {"l": 64, "r": 24, "t": 36, "b": 40},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hoverlabel": {"font": {"family": FONT}},
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        "height": 380,
    }
    base.update(extra)
    return base


def axis(title: str = "", **extra) -> dict:
    return {**AXIS, "title": {"text": title}, **extra}


def case_name(c: CaseView) -> str:
    return c.label


def _finished(section: Section, cases: list[CaseView], runtimes: tuple[str, ...], why_none: str) -> list[CaseView]:
    """The section's cases: finished ones of these runtimes; with none, the section says why."""
    chosen = [c for c in cases if c.status == "ok" and c.runtime in runtimes]
    if not chosen:
        section.empty = why_none
    return chosen


def missing_notes(cases: list[CaseView], metrics: list[str], scope: Scope) -> list[dict]:
    """Cases without a figure, grouped by reason: the report says why instead of drawing nothing."""
    by_reason: dict[str, list[str]] = {}
    for c in cases:
        for m in metrics:
            if c.value(m) is None:
                who = f"{c.label} ({scope.series(c)})"
                names = by_reason.setdefault(f"{m}: {c.why_missing(m)}", [])
                if who not in names:
                    names.append(who)
    return [{"reason": r, "cases": names} for r, names in by_reason.items()]


def _error(c: CaseView, metric: str, value: float | None) -> tuple[float | None, float | None]:
    s = c.spread(metric)
    if value is None or not s or s.get("p10") is None:
        return None, None
    return max(0.0, s["p90"] - value), max(0.0, value - s["p10"])


def _hbars(scope: Scope, cases: list[CaseView], values, spread_of, xaxis: str, legend: bool, unit: str) -> list[dict]:
    """Horizontal bars, one trace per series, cases on the y axis (long labels stay readable)."""
    traces = []
    for series, group in scope.grouped(cases).items():
        xs = [values(c) for c in group]
        spreads = [spread_of(c) if x is not None else None for c, x in zip(group, xs)]
        trace = {
            "type": "bar",
            "orientation": "h",
            "name": series,
            "legendgroup": series,
            "showlegend": legend,
            "y": [case_name(c) for c in group],
            "x": xs,
            "marker": {"color": scope.color(series)},
            "xaxis": xaxis,
            "yaxis": "y",
            "hovertemplate": f"%{{y}}<br>%{{x:.4g}} {unit}<extra>{series}</extra>",
        }
        if any(spreads):
            trace["error_x"] = {
                "type": "data",
                "symmetric": False,
                "array": [max(0.0, s["p90"] - x) if s else None for s, x in zip(spreads, xs)],
                "arrayminus": [max(0.0, x - s["p10"]) if s else None for s, x in zip(spreads, xs)],
                "color": "#334155",
                "thickness": 1.2,
                "width": 3,
            }
        traces.append(trace)
    return traces


def _spread_of(metric: str):
    def get(c: CaseView) -> dict | None:
        s = c.spread(metric)
        return s if s and s.get("p10") is not None else None

    return get


def _no_spread(c: CaseView) -> None:
    return None


def hbar_height(scope: Scope, cases: list[CaseView]) -> int:
    rows = len({case_name(c) for c in cases}) * max(1, len(scope.grouped(cases)))
    return max(260, 110 + 17 * rows)


def _two_panels(height: int, left: str, right: str, **extra) -> dict:
    return layout(
        barmode="group",
        height=height,
        bargap=0.25,
        yaxis=axis("", autorange="reversed"),
        xaxis=axis(left, domain=[0, 0.48], rangemode="tozero"),
        xaxis2=axis(right, domain=[0.52, 1], anchor="y", rangemode="tozero"),
        **extra,
    )


def throughput(cases: list[CaseView], scope: Scope) -> Section:
    section = Section("throughput", "Prefill and decode speed")
    llm = _finished(section, cases, LLM_RUNTIMES, "no llama.cpp cases in these runs")
    if not llm:
        return section
    section.notes = missing_notes(llm, ["prefill_tok_s", "decode_tok_s"], scope)
    if not any(c.value("prefill_tok_s") is not None or c.value("decode_tok_s") is not None for c in llm):
        section.empty = "no case has a prefill or decode rate"
        return section
    data = _hbars(
        scope, llm, lambda c: c.value("prefill_tok_s"), _spread_of("prefill_tok_s"), "x", True, "tok/s"
    ) + _hbars(scope, llm, lambda c: c.value("decode_tok_s"), _spread_of("decode_tok_s"), "x2", False, "tok/s")
    fig = {"data": data, "layout": _two_panels(hbar_height(scope, llm), "prefill (tok/s)", "decode (tok/s)")}
    section.figures.append(
        Figure("throughput", "tok/s", fig, "Median over counted trials; error bars p10–p90. Higher is better.")
    )
    return section


PROMPT_PARAM = re.compile(r"\s*prompt_tokens=\S+")


def ttft(cases: list[CaseView], scope: Scope) -> Section:
    section = Section("ttft", "Time to first token against prompt length")
    llm = _finished(section, cases, ("llama_cpp",), "no llama.cpp cases with per-token times in these runs")
    if not llm:
        return section
    section.notes = missing_notes(llm, ["ttft_s"], scope)
    lines: dict[tuple[str, str], list[CaseView]] = {}
    for c in llm:
        if c.value("ttft_s") is not None and c.prompt_tokens() is not None:
            lines.setdefault((scope.series(c), PROMPT_PARAM.sub("", c.label)), []).append(c)
    if not lines:
        section.empty = "no case has a time to first token"
        return section
    data = []
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    variants = sorted({k[1] for k in lines})
    for (series, variant), group in lines.items():
        group.sort(key=lambda c: c.prompt_tokens())
        ys = [c.value("ttft_s") for c in group]
        errs = [_error(c, "ttft_s", y) for c, y in zip(group, ys)]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"{variant} · {series}",
                "x": [c.prompt_tokens() for c in group],
                "y": ys,
                "line": {"color": scope.color(series), "dash": dashes[variants.index(variant) % len(dashes)]},
                "marker": {"size": 7},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [e[0] for e in errs],
                    "arrayminus": [e[1] for e in errs],
                    "thickness": 1.2,
                    "width": 3,
                },  # fmt: skip
                "hovertemplate": "%{x} prompt tokens<br>TTFT %{y:.4g} s<extra>%{fullData.name}</extra>",
            }
        )
    fig = {
        "data": data,
        "layout": layout(
            xaxis=axis("prompt length (tokens)"),
            yaxis=axis("time to first token (s)", rangemode="tozero"),
            legend={"orientation": "v", "x": 1.01, "y": 1, "xanchor": "left"},
            margin={"l": 64, "r": 24, "t": 20, "b": 48},
        ),
    }
    section.figures.append(
        Figure("ttft", "TTFT", fig, "Request start (tokenisation included) to first token; median, p10–p90.")
    )
    return section


def _box_stats(values: np.ndarray) -> dict:
    q = np.percentile(values, [1, 25, 50, 75, 99])
    return {"lowerfence": q[0], "q1": q[1], "median": q[2], "q3": q[3], "upperfence": q[4], "mean": values.mean()}


def itl(cases: list[CaseView], scope: Scope) -> Section:
    section = Section("itl", "Inter-token latency")
    llm = _finished(section, cases, LLM_RUNTIMES, "no llama.cpp cases in these runs")
    if not llm:
        return section
    data, lowest, highest = [], np.inf, 0.0
    for series, group in scope.grouped(llm).items():
        stats, names = [], []
        for c in group:
            gaps = c.itl_ms()
            if gaps.size:
                stats.append(_box_stats(gaps))
                names.append(case_name(c))
                lowest, highest = min(lowest, stats[-1]["lowerfence"]), max(highest, stats[-1]["upperfence"])
        if not stats:
            continue
        trace = {"type": "box", "orientation": "h", "name": series, "y": names, "boxmean": True,
                 "marker": {"color": scope.color(series)}, "line": {"width": 1.2}}  # fmt: skip
        for k in ("lowerfence", "q1", "median", "q3", "upperfence", "mean"):
            trace[k] = [round(float(s[k]), 5) for s in stats]
        data.append(trace)
    section.notes = missing_notes(llm, ["itl_p50_ms"], scope)
    if not data:
        section.empty = "no case has per-token times (llama.cpp's command-line tools report totals only)"
        return section
    log = lowest > 0 and highest / lowest > 30
    fig = {
        "data": data,
        "layout": layout(
            boxmode="group",
            height=hbar_height(scope, [c for c in llm if c.itl_ms().size]),
            yaxis=axis("", autorange="reversed"),
            xaxis=axis("gap between tokens (ms)" + (", log scale" if log else ""), type="log" if log else "linear"),
        ),
    }
    section.figures.append(
        Figure(
            "itl",
            "ITL",
            fig,
            "Gaps between generated tokens, pooled over counted trials: box p25–p75, line median, dashed mean, "
            "whiskers p1–p99.",
        )
    )
    return section


def onnx_latency(cases: list[CaseView], scope: Scope) -> Section:
    section = Section("onnx", "ONNX latency percentiles")
    ort = _finished(section, cases, ("onnxruntime",), "no ONNX cases in these runs")
    if not ort:
        return section
    section.notes = missing_notes(ort, ["latency_p50_ms"], scope)
    many = scope.multi_run or scope.multi_device
    names = [f"{case_name(c)} · {scope.series(c)}" if many else case_name(c) for c in ort]
    shades = {"latency_p50_ms": "#1d4ed8", "latency_p90_ms": "#60a5fa", "latency_p99_ms": "#bfdbfe"}
    data = []
    for metric, color in shades.items():
        label = metric.split("_")[1]
        data.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": label,
                "y": names,
                "x": [c.value(metric) for c in ort],
                "marker": {"color": color, "line": {"color": "#1e3a8a", "width": 0.5}},
                "customdata": [c.value("throughput_ips") for c in ort],
                "hovertemplate": f"%{{y}}<br>{label} %{{x:.4g}} ms<br>%{{customdata:.4g}} inf/s<extra></extra>",
            }
        )
    values = [v for t in data for v in t["x"] if v]
    log = bool(values) and min(values) > 0 and max(values) / min(values) > 30
    fig = {
        "data": data,
        "layout": layout(
            barmode="group",
            height=max(260, 110 + 3 * 15 * len(names)),
            bargap=0.25,
            yaxis=axis("", autorange="reversed"),
            xaxis=axis("latency per inference (ms)" + (", log scale" if log else ""), type="log" if log else "linear"),
        ),
    }
    section.figures.append(
        Figure("onnx", "latency", fig, "Per-inference latency over counted trials: p50, p90, p99. Lower is better.")
    )
    return section


def memory(cases: list[CaseView], scope: Scope) -> Section:
    section = Section("memory", "Memory: peak RSS against model file size")
    ok = [c for c in cases if c.status == "ok"]
    points = [c for c in ok if c.value("peak_rss_mb") is not None and c.case.get("model_size_bytes")]
    section.notes = missing_notes(ok, ["peak_rss_mb"], scope)
    if not points:
        section.empty = "no case has both a peak RSS and a model file size"
        return section
    data = []
    symbols = ["circle", "diamond", "square", "triangle-up", "x", "star"]
    runtimes = sorted({c.runtime for c in points})
    for series, group in scope.grouped(points).items():
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": series,
                "x": [c.case["model_size_bytes"] / 1e6 for c in group],
                "y": [c.value("peak_rss_mb") for c in group],
                "text": [f"{c.label} ({c.runtime})" for c in group],
                "marker": {
                    "color": scope.color(series),
                    "size": 10,
                    "opacity": 0.85,
                    "symbol": [symbols[runtimes.index(c.runtime) % len(symbols)] for c in group],
                    "line": {"color": "#ffffff", "width": 1},
                },
                "hovertemplate": "%{text}<br>file %{x:.4g} MB<br>peak RSS %{y:.4g} MB<extra></extra>",
            }
        )
    files = [c.case["model_size_bytes"] / 1e6 for c in points]
    rss = [c.value("peak_rss_mb") for c in points]
    lo, hi = min(files + rss), max(files + rss)
    data.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": "RSS = file size",
            "x": [lo, hi],
            "y": [lo, hi],
            "line": {"color": "#94a3b8", "dash": "dot", "width": 1},
            "hoverinfo": "skip",
        }
    )
    pad = 1.6  # on a log axis: the points' own range, a little wider; the reference line may be clipped
    fig = {
        "data": data,
        "layout": layout(
            xaxis=axis("model file size (MB)", type="log", range=_log_range(files, pad)),
            yaxis=axis("peak RSS of the agent process (MB)", type="log", range=_log_range(rss, pad)),
        ),
    }
    caption = "High-water mark (VmHWM) of the fresh agent process; marker shape per runtime (" + ", ".join(
        f"{symbols[i]}: {r}" for i, r in enumerate(runtimes)
    )
    section.figures.append(Figure("memory", "memory", fig, caption + ")."))
    return section


def _log_range(values: list[float], pad: float) -> list[float]:
    positive = [v for v in values if v > 0] or [1.0]
    return [float(np.log10(min(positive) / pad)), float(np.log10(max(positive) * pad))]


def pareto_front(points: list[tuple[float, float]], x_higher: bool = True, y_higher: bool = False) -> list[int]:
    """Indices of the points no other point beats on both axes (by default higher x, tok/s, and lower y, J/token:
    the Pareto front), ordered by x."""
    keyed = [((x if x_higher else -x), (y if y_higher else -y)) for x, y in points]
    front = [
        i for i, (x, y) in enumerate(keyed) if not any(ox >= x and oy >= y and (ox, oy) != (x, y) for ox, oy in keyed)
    ]
    return sorted(front, key=lambda i: points[i][0])


def front_trace(points: list[tuple[float, float]], labels: list[str], front: list[int]) -> dict:
    """The Pareto front as a plotly trace: a step line through circled points."""
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "Pareto front",
        "x": [points[i][0] for i in front],
        "y": [points[i][1] for i in front],
        "text": [labels[i] for i in front],
        "line": {"color": "#0f172a", "width": 1.5, "shape": "hv"},
        "marker": {"size": 16, "symbol": "circle-open", "color": "#0f172a", "line": {"width": 2}},
        "hovertemplate": "%{text}<br>on the front<extra></extra>",
    }


def _per_unit_bars(scope: Scope, cases: list[CaseView], metric: str, spread_of, unit: str) -> list[dict]:
    """Two panels: J per unit of work (left) and its inverse, work per J (right; only where J > 0)."""

    def inverse(c: CaseView) -> float | None:
        v = c.value(metric)
        return 1 / v if v and v > 0 else None

    return _hbars(scope, cases, lambda c: c.value(metric), spread_of, "x", True, "J") + _hbars(
        scope, cases, inverse, _no_spread, "x2", False, f"{unit} per J"
    )


def energy(cases: list[CaseView], scope: Scope) -> Section:
    section = Section("energy", "Energy")
    ok = [c for c in cases if c.status == "ok"]
    llm = [c for c in ok if c.runtime in LLM_RUNTIMES]
    ort = [c for c in ok if c.runtime == "onnxruntime"]
    section.notes = missing_notes(llm, ["j_per_token"], scope) + missing_notes(ort, ["energy_j"], scope)
    with_llm = [c for c in llm if c.value("j_per_token") is not None]
    with_ort = [c for c in ort if c.value("energy_j") is not None]
    if with_llm:
        data = _per_unit_bars(scope, with_llm, "j_per_token", CaseView.j_per_token_spread, "tokens")
        fig = {
            "data": data,
            "layout": _two_panels(hbar_height(scope, with_llm), "decode energy (J/token)", "tokens per J"),
        }
        section.figures.append(
            Figure(
                "energy_llm",
                "J/token",
                fig,
                "Decode energy per generated token, idle baseline subtracted (median over trials, p10–p90); "
                "and its inverse, tokens per joule.",
            )
        )
        pareto = [c for c in with_llm if c.value("decode_tok_s") is not None]
        if pareto:
            section.figures.append(_pareto_figure(pareto, scope))
    if with_ort:
        data = _per_unit_bars(scope, with_ort, "energy_j", _no_spread, "inferences")
        fig = {
            "data": data,
            "layout": _two_panels(hbar_height(scope, with_ort), "energy per inference (J)", "inferences per J"),
        }
        section.figures.append(
            Figure(
                "energy_onnx",
                "J/inference",
                fig,
                "Energy of the counted trials' window, idle baseline subtracted, divided by the inferences in it.",
            )
        )
    if not section.figures:
        section.empty = "no case has an energy figure"
    return section


def _pareto_figure(cases: list[CaseView], scope: Scope) -> Figure:
    points = [(c.value("decode_tok_s"), c.value("j_per_token")) for c in cases]
    front = pareto_front(points)
    data = []
    for series, group in scope.grouped(cases).items():
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": series,
                "x": [c.value("decode_tok_s") for c in group],
                "y": [c.value("j_per_token") for c in group],
                "text": [c.label for c in group],
                "marker": {"color": scope.color(series), "size": 10, "opacity": 0.85},
                "hovertemplate": "%{text}<br>%{x:.4g} tok/s<br>%{y:.4g} J/token<extra>" + series + "</extra>",
            }
        )
    data.append(front_trace(points, [c.label for c in cases], front))
    fig = {
        "data": data,
        "layout": layout(
            xaxis=axis("decode (tok/s) — higher is better"),
            yaxis=axis("decode energy (J/token) — lower is better"),
        ),
    }
    return Figure(
        "pareto",
        "Pareto",
        fig,
        "Each case's decode speed against its energy per token; circled cases are on the Pareto front "
        "(no other case is both faster and cheaper).",
    )
