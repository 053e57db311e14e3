"""The report's sustained section: how fast each sustained case (protocol.sustained_s) stayed under continuous load.

Per case, one figure: each counted trial's figure (decode tok/s, or ONNX latency) against seconds since the
sustained trials began, with the hottest thermal zone and the main CPU clock on axes of their own to the right;
throttled spans shaded, the throttle onset marked, the burst (first 10%) and sustained (last 20%) medians drawn
over their windows, and the stability figure in the title. Then a table of every sustained case, ranked by
sustained (not burst) throughput within each model and workload, across devices. The figures are
melt.analysis.sustained's, read from metrics.json; the series are recomputed from trials.jsonl and trace.csv by
the same definitions (melt.analysis.sustained.series).
"""

from __future__ import annotations

import numpy as np

from melt.analysis import sustained as held
from melt.analysis.trace import read_trace
from melt.report.data import CaseView
from melt.report.figures import Figure, Scope, Section, axis, layout
from melt.report.table import fmt

MAX_POINTS = 600  # trials per figure beyond this are shown as per-bucket medians (raw trials stay on disk)
SHADE = "rgba(220, 38, 38, 0.13)"
TEMP_COLOR, CLOCK_COLOR = "#dc2626", "#64748b"


def _thinned(points: list[tuple[float, float]], span_s: float) -> tuple[list[float], list[float], bool]:
    """(x, y, thinned): the points, or with more than MAX_POINTS the median of each of MAX_POINTS time buckets."""
    if len(points) <= MAX_POINTS:
        return [p[0] for p in points], [p[1] for p in points], False
    t = np.array([p[0] for p in points])
    v = np.array([p[1] for p in points])
    bucket = np.minimum((t / max(span_s, 1e-9) * MAX_POINTS).astype(int), MAX_POINTS - 1)
    xs, ys = [], []
    for b in np.unique(bucket):
        chosen = bucket == b
        xs.append(float(np.median(t[chosen])))
        ys.append(float(np.median(v[chosen])))
    return xs, ys, True


def _bucketed(x: list[float], y: list, pick) -> tuple[list[float], list]:
    """At most MAX_POINTS points of a trace line: per bucket of consecutive samples its first time and pick (max
    for a temperature, min for a clock: the extremes a throttle shows) of the values read; as is when shorter."""
    if len(x) <= MAX_POINTS:
        return x, y
    xs, ys = [], []
    for part in np.array_split(np.arange(len(x)), MAX_POINTS):
        values = [y[i] for i in part if y[i] is not None]
        xs.append(x[part[0]])
        ys.append(pick(values) if values else None)
    return xs, ys


def main_clock(channels: list[str], columns: dict) -> str | None:
    """The CPU clock channel shown: of the cpuN.freq_mhz channels, the one whose cpuN.max_freq_mhz is highest (the
    fastest cluster), else the first; None where the trace has no CPU clock."""
    clocks = [c for c in channels if c.startswith("cpu") and c.endswith(".freq_mhz") and "max_freq" not in c]

    def top(c: str) -> float:
        values = [v for v in columns.get(c.replace(".freq_mhz", ".max_freq_mhz"), []) if v is not None]
        return max(values) if values else float("-inf")

    return max(clocks, key=top) if clocks else None


def _trace_lines(c: CaseView, t0_s: float, span_s: float) -> tuple[list[dict], list[str]]:
    """The hottest zone (°C, yaxis2) and the main clock (MHz, yaxis3) over the span; and what is not shown, why."""
    trace = read_trace(c.path)
    if trace is None or not trace.t_s:
        return [], ["no trace: temperature and clock not shown"]
    rows = [i for i, t in enumerate(trace.t_s) if t0_s <= t <= t0_s + span_s]
    x = [trace.t_s[i] - t0_s for i in rows]
    lines, notes = [], []
    zones = [trace.columns[z] for z in trace.channels("temp.")]
    hottest = [max((z[i] for z in zones if z[i] is not None), default=None) for i in rows]
    if any(v is not None for v in hottest):
        tx, ty = _bucketed(x, hottest, max)
        lines.append({"type": "scatter", "mode": "lines", "name": "hottest zone °C", "x": tx, "y": ty,
                      "yaxis": "y2", "line": {"color": TEMP_COLOR, "width": 1.5}})  # fmt: skip
    else:
        notes.append("no thermal zone read: temperature not shown")
    clock = main_clock(list(trace.columns), trace.columns)
    if clock:
        cx, cy = _bucketed(x, [trace.columns[clock][i] for i in rows], min)
        line = {"color": CLOCK_COLOR, "width": 1, "dash": "dot"}
        lines.append({"type": "scatter", "mode": "lines", "name": f"{clock.split('.')[0]} clock MHz", "x": cx,
                      "y": cy, "yaxis": "y3", "line": line})  # fmt: skip
    else:
        notes.append("no CPU clock in the trace: clock not shown")
    return lines, notes


def _figure(c: CaseView, scope: Scope) -> Figure | None:
    details = (c.metrics or {}).get("sustained") or {}
    if not details.get("t_start_ns") or not details.get("span_s"):
        return None
    llama = c.runtime != "onnxruntime"
    burst_m, sus_m = held.figure_names(c.runtime) or (None, None)
    span_s = details["span_s"]
    points = [((a + b) / 2, v) for a, b, v in held.series(c.runtime, c.trials, details["t_start_ns"])]
    x, y, thinned = _thinned(points, span_s)
    name = "decode tok/s per trial" if llama else "latency ms per inference"
    data = [{"type": "scatter", "mode": "markers", "name": name + (" (bucket medians)" if thinned else ""), "x": x,
             "y": y, "marker": {"color": scope.color(scope.series(c)), "size": 4, "opacity": 0.7}}]  # fmt: skip
    for label, metric, window in (("burst", burst_m, "burst_window_s"), ("sustained", sus_m, "sustained_window_s")):
        value = c.value(metric) if metric else None
        if value is not None:
            line = {"color": "#0f172a", "width": 3, "dash": "solid" if label == "sustained" else "dash"}
            data.append({"type": "scatter", "mode": "lines", "name": f"{label} median {fmt(value)}",
                         "x": details[window], "y": [value, value], "line": line})  # fmt: skip
    lines, notes = _trace_lines(c, details["t_start_ns"] / 1e9, span_s)
    data += lines
    shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": a, "x1": b, "y0": 0, "y1": 1, "fillcolor": SHADE,
               "line": {"width": 0}, "layer": "below"} for a, b in details.get("throttled_spans_s") or []]  # fmt: skip
    annotations = []
    onset = c.value("throttle_onset_s")
    if onset is not None:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": onset, "x1": onset, "y0": 0, "y1": 1,
                       "line": {"color": TEMP_COLOR, "width": 2}})  # fmt: skip
        at = c.value("temp_at_onset_c")
        annotations.append({"x": onset, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom", "showarrow": False,
                            "text": f"throttle onset {onset:.1f} s" + (f" at {at:.1f} °C" if at is not None else ""),
                            "font": {"color": TEMP_COLOR}})  # fmt: skip
    else:
        notes.append(f"no throttle onset: {c.why_missing('throttle_onset_s')}")
    stability = c.value("stability_pct")
    title = f"{c.label} ({scope.series(c)}): stability " + (
        f"{stability:.1f}%" if stability is not None else f"— ({c.why_missing('stability_pct')})"
    )
    fig = {
        "data": data,
        "layout": layout(
            title={"text": title, "font": {"size": 13}},
            margin={"l": 64, "r": 24, "t": 72, "b": 40},
            xaxis=axis("seconds since the sustained trials began", domain=[0, 0.86]),
            yaxis=axis("decode (tok/s) — higher is better" if llama else "latency (ms) — lower is better"),
            yaxis2=axis("hottest zone (°C)", overlaying="y", side="right", anchor="x", showgrid=False,
                        color=TEMP_COLOR),
            yaxis3=axis("CPU clock (MHz)", overlaying="y", side="right", anchor="free", position=0.97,
                        showgrid=False, color=CLOCK_COLOR),
            shapes=shapes,
            annotations=annotations,
            legend={"orientation": "h", "x": 0, "y": -0.18, "yanchor": "top"},
            height=420,
        ),
    }  # fmt: skip
    caption = (
        f"Each counted trial at its midpoint over the {span_s:.0f} s of back-to-back trials"
        + (f" (more than {MAX_POINTS} trials: medians of {MAX_POINTS} time buckets)" if thinned else "")
        + "; the dashed and solid bars are the medians of the trials that ran in the first 10% (burst) and the last "
        "20% (sustained) of the time; shaded: samples "
        "showing throttling (a throttle flag, or a clock held under 90% of its maximum while busy); a trace of "
        f"more than {MAX_POINTS} samples shows each bucket's hottest zone and lowest clock."
        + (" " + "; ".join(notes) + "." if notes else "")
    )
    return Figure(f"sustained_{c.run_id}_{c.case_id}", title, fig, caption)


def ranking(cases: list[CaseView], scope: Scope) -> dict:
    """The table across devices: every sustained case, grouped by model and workload (label without the device),
    ranked within the group by sustained throughput (decode tok/s higher first; ONNX latency lower first), cases
    without a sustained figure last. {"key", "caption", "columns", "rows": [[cell text, ...]]}."""

    def key(c: CaseView) -> tuple:
        metric = (held.figure_names(c.runtime) or (None, None))[1]
        value = c.value(metric) if metric else None
        order = -value if value is not None and c.runtime != "onnxruntime" else value
        return (c.model, c.params_text, value is None, order if order is not None else 0)

    rows, rank, group = [], 0, None
    for c in sorted(cases, key=key):
        if (c.model, c.params_text) != group:
            group, rank = (c.model, c.params_text), 0
        rank += 1
        burst_m, sus_m = held.figure_names(c.runtime) or ("", "")
        unit = "ms" if c.runtime == "onnxruntime" else "tok/s"
        rows.append(
            [
                str(rank),
                c.label,
                scope.series(c),
                *(_text(c, m, unit) for m in (sus_m, burst_m)),
                _text(c, "stability_pct", "%"),
                _text(c, "throttle_onset_s", "s"),
                _text(c, "temp_end_c", "°C"),
                c.validity,
            ]  # fmt: skip
        )
    return {
        "key": "sustained-ranking",
        "caption": "Sustained cases ranked by sustained throughput (last 20% of the time), not burst, within each "
        "model and workload; ONNX by sustained p50 latency, lower first.",
        "columns": [
            "rank",
            "case",
            "device",
            "sustained",
            "burst",
            "stability",
            "throttle onset",
            "temp at end",
            "validity",
        ],  # fmt: skip
        "rows": rows,
    }


def _text(c: CaseView, metric: str, unit: str) -> str:
    value = c.value(metric) if metric else None
    return f"{fmt(value)} {unit}" if value is not None else "—"


def sustained(cases: list[CaseView], scope: Scope) -> Section:
    """The section: a figure per sustained case and the ranking table; empty (with why) when no case is one."""
    section = Section("sustained", "Sustained performance: does it stay that fast?")
    chosen = [c for c in cases if c.status == "ok" and held.is_sustained(c.case)]
    if not chosen:
        section.empty = "no case ran the sustained protocol (protocol.sustained_s)"
        return section
    for c in chosen:
        figure = _figure(c, scope)
        if figure is not None:
            section.figures.append(figure)
        else:
            section.notes.append({"reason": "no sustained span recorded", "cases": [f"{c.label} ({scope.series(c)})"]})
    section.tables.append(ranking(chosen, scope))
    return section
