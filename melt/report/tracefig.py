"""One case's trace as a plotly figure: a row per unit (power, temperature, frequency, utilisation,
memory) on a shared time axis, the phases shaded behind every row, throttled spans in red.

The time axis ("x") is sent once per case and attached to every line by the page's script: the
figure's traces carry no x of their own, which keeps the embedded data small.
"""

from __future__ import annotations

from melt.report.figures import FONT, PALETTE, axis, layout
from melt.report.traces import PHASE_COLORS, PHASE_NAMES

ROW_GAP = 0.045
THROTTLE_COLOR = "#dc2626"  # a band above the rows: it marks, it does not hide the lines


def _name(names: list[str]) -> str:
    if len(names) <= 2:
        return " = ".join(names)
    return f"{names[0]} (+{len(names) - 1} identical)"


def _domains(n: int, weights: list[float]) -> list[list[float]]:
    total = sum(weights)
    usable = 1 - ROW_GAP * (n - 1)
    top, out = 1.0, []
    for w in weights:
        h = usable * w / total
        out.append([max(0.0, top - h), top])
        top -= h + ROW_GAP
    return out


def trace_figure(view: dict) -> dict:
    """{"x": shared time axis, "data": lines without x, "layout"} for the page to plot."""
    groups = view["groups"]
    weights = [1.4 if g["key"] == "power" else 1.0 for g in groups]
    domains = _domains(len(groups), weights)
    data, lay = (
        [],
        layout(
            height=140 + 170 * len(groups),
            hovermode="x unified",
            margin={"l": 64, "r": 230, "t": 56, "b": 44},
            legend={"orientation": "h", "x": 0, "y": 1.035, "yanchor": "bottom", "font": {"size": 11}},
            shapes=[],
        ),
    )
    for row, (g, dom) in enumerate(zip(groups, domains), start=1):
        suffix = "" if row == 1 else str(row)
        lay[f"yaxis{suffix}"] = axis(g["title"], domain=dom, anchor=f"x{suffix}" if suffix else "x")
        lay[f"xaxis{suffix}"] = axis(
            "time since the first sample (s)" if row == len(groups) else "",
            anchor=f"y{suffix}" if suffix else "y",
            matches=None if row == 1 else "x",
            showticklabels=row == len(groups),
        )
        legend = f"legend{row + 1}"
        lay[legend] = {"x": 1.01, "xanchor": "left", "y": dom[1], "yanchor": "top", "font": {"size": 10},
                       "title": {"text": g["title"], "font": {"size": 11}}, "tracegroupgap": 2}  # fmt: skip
        for i, s in enumerate(g["series"]):
            total = s["names"][0] in ("power.total_w", "cpu.util_pct")
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": _name(s["names"]),
                    "y": s["y"],
                    "xaxis": f"x{suffix}",
                    "yaxis": f"y{suffix}",
                    "legend": legend,
                    "connectgaps": False,
                    "line": {
                        "width": 2.2 if total else 1.2,
                        "color": "#0f172a" if total else PALETTE[i % len(PALETTE)],
                    },
                    "hovertemplate": "%{y:.4g}",
                }
            )
    seen = set()
    for p in view["phases"]:
        lay["shapes"].append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": p["t0_s"],
                "x1": max(p["t1_s"], p["t0_s"] + 1e-6),
                "y0": 0,
                "y1": 1,
                "fillcolor": PHASE_COLORS.get(p["phase"], "rgba(0,0,0,0.06)"),
                "line": {"width": 0},
                "layer": "below",
                "name": PHASE_NAMES.get(p["phase"], p["phase"]),
                "legendgroup": p["phase"],
                "showlegend": p["phase"] not in seen,
            }
        )
        seen.add(p["phase"])
    for i, (t0, t1) in enumerate(view["throttled"]):
        lay["shapes"].append(
            {
                "type": "rect", "xref": "x", "yref": "paper", "x0": t0, "x1": max(t1, t0 + 1e-6), "y0": 1.004,
                "y1": 1.022, "fillcolor": THROTTLE_COLOR, "line": {"width": 0}, "layer": "above",
                "name": "throttled", "legendgroup": "throttled", "showlegend": i == 0,
            }
        )  # fmt: skip
    lay["hoverlabel"] = {"font": {"family": FONT, "size": 11}}
    return {"x": view["x"], "data": data, "layout": lay}
