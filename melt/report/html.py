"""`melt report`: one self-contained HTML file for one run or several side by side.

Everything is in the file: plotly.js (from the installed plotly package, embedded once), the plot
data as one JSON block, the styles and the few lines of script that plot, sort and filter. The
page makes no network request, so it opens on an offline device or from a CI artifact. Traces are
thinned for display (min/max per bucket); the raw samples stay in the results folder.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2

from melt.errors import InputError, Problem
from melt.report import comparison, figures, quality, sustained, table
from melt.report.data import CaseView, RunView, load_run
from melt.report.tracefig import trace_figure
from melt.report.traces import case_trace, header, shown_channels

# Trace values embedded in all (points x channels, summed over cases): keeps 100 cases with
# 10-minute traces within the 15 MB budget; a small run gets the full 2000 points per channel.
TRACE_VALUE_BUDGET = 1_200_000
MAX_POINTS_PER_CHANNEL = 2000
MIN_POINTS_PER_CHANNEL = 200
DEFAULT_THRESHOLD_PCT = 5.0


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("melt.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["flat"] = _flat
    return env


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested facts as (key, text) rows for a details table."""
    rows = []
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _flat(v, key + ".") if v else [(key, "—")]  # an empty mapping is said (no variables)
        elif isinstance(v, list):
            rows.append((key, ", ".join(str(x) for x in v) if v else "—"))
        else:
            rows.append((key, "—" if v is None else str(v)))
    return rows


def _duration(start: str | None, end: str | None) -> str:
    try:
        s = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def _run_facts(run: RunView) -> dict:
    m = run.manifest
    statuses = [c.status for c in run.cases]
    host = m.get("host", {})
    devices = []
    for name, d in (m.get("devices") or {}).items():
        profile = d.get("profile", {})
        runtimes = {
            k: ", ".join(f"{kk} {vv}" for kk, vv in r.items() if kk in ("llama_cpp_python", "onnxruntime", "build"))
            or ("available" if r.get("available") else r.get("error", "not available"))
            for k, r in (d.get("runtimes") or {}).items()
        }
        env = d.get("environment") or {}
        devices.append(
            {
                "name": name,
                "platform": profile.get("platform", ""),
                "transport": (profile.get("transport") or {}).get("kind", ""),
                "summary": ", ".join(
                    str(x)
                    for x in (
                        env.get("model") or env.get("cpu_model"),
                        f"{env['cpu_count']} cores" if env.get("cpu_count") else None,
                        f"{env['mem_total_mb'] / 1024:.1f} GB" if env.get("mem_total_mb") else None,
                        env.get("os"),
                    )
                    if x
                ),
                "power_method": (d.get("sensors") or {}).get("power_method", "none"),
                "unreachable": d.get("unreachable"),
                "environment": _flat(env),
                "runtimes": runtimes,
                "sensors": _flat({k: v for k, v in (d.get("sensors") or {}).items() if k != "probes"}),
            }
        )
    return {
        "run_id": run.run_id,
        "path": str(run.path),
        "recipes": run.recipe_names,
        "descriptions": run.recipe_descriptions,
        "started_at": m.get("started_at") or "",
        "ended_at": m.get("ended_at") or "",
        "duration": _duration(m.get("started_at"), m.get("ended_at")),
        "status": m.get("status") or "?",
        "melt": f"{host.get('melt', '?')} ({host.get('melt_commit', '')})".replace(" ()", ""),
        "host": _flat(host.get("environment", {})),
        "packages": _flat(host.get("packages", {})),
        "ok": statuses.count("ok"),
        "not_ok": len(statuses) - statuses.count("ok"),
        "devices": devices,
    }


def _trace_budget(cases: list[CaseView]) -> int:
    channels = sum(sum(len(v) for v in shown_channels(header(c.path)).values()) for c in cases)
    if not channels:
        return MAX_POINTS_PER_CHANNEL
    per = TRACE_VALUE_BUDGET // channels
    return max(MIN_POINTS_PER_CHANNEL, min(MAX_POINTS_PER_CHANNEL, per - per % 2))


def _traces(cases: list[CaseView], scope: figures.Scope) -> tuple[list[dict], dict, list[dict]]:
    """(picker options, case key -> figure, cases without a trace and why)."""
    ok = [c for c in cases if c.status == "ok"]
    max_points = _trace_budget(ok)
    options, figs, without = [], {}, []
    for c in ok:
        view = case_trace(c.path, c.agent, c.trials if c.runtime == "llama_cpp" else [], c.runtime, max_points)
        key = f"{c.run_id}/{c.case_id}"
        if view is None or "empty" in view or not view["groups"]:
            interval = (c.case.get("telemetry") or {}).get("interval_ms")
            why = "telemetry was off (interval_ms = 0)" if interval == 0 else "no trace file"
            if view is not None:
                why = view.get("empty") or "no plottable channel in the trace"
            without.append({"reason": why, "cases": [f"{c.label} ({scope.series(c)})"]})
            continue
        figs[key] = trace_figure(view)
        throttled = " · throttled" if view["throttled"] else ""
        options.append(
            {
                "key": key,
                "text": f"{scope.series(c)} · {c.label}{throttled}",
                "samples": view["samples"],
                "shown": view["shown_points"],
                "interval_ms": round(view["interval_s"] * 1e3),
            }
        )
    return options, figs, without


def _severity(validity: str) -> int:
    order = ["valid", "semivalid", "invalid", "failed"]
    return order.index(validity) if validity in order else len(order)


def _json_script(data: dict) -> str:
    """JSON safe inside <script>: no '</' can close the element early."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def build(run_dirs: list[Path], threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> str:
    """The report's HTML text."""
    runs = [load_run(Path(d)) for d in run_dirs]
    cases = [c for r in runs for c in r.cases]
    if len(runs) > 1:  # the same case from each run next to each other (sort is stable: run order kept)
        cases.sort(key=lambda c: (c.device, c.model, c.label, c.case_id))
    validity = [c.validity for c in cases]
    scope = figures.Scope(cases)
    multi = len(runs) > 1
    sections = [
        figures.throughput(cases, scope),
        figures.ttft(cases, scope),
        figures.itl(cases, scope),
        figures.onnx_latency(cases, scope),
        figures.memory(cases, scope),
        figures.energy(cases, scope),
        quality.quality(cases, scope),
        sustained.sustained(cases, scope),
    ]
    options, trace_figs, without_trace = _traces(cases, scope)
    comparisons = [comparison.pair(runs[0].path, r.path, threshold_pct) for r in runs[1:]]
    plots = {f.key: f.fig for s in sections for f in s.figures}
    title = " vs ".join(r.run_id for r in runs)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            runs=[_run_facts(r) for r in runs],
            multi=multi,
            cases=cases,
            validity_counts=[(v, validity.count(v)) for v in dict.fromkeys(sorted(validity, key=_severity))],
            scope=scope,
            table=table.build(cases, with_run=multi),
            comparisons=comparisons,
            sections=sections,
            trace_options=options,
            without_trace=without_trace,
            data_json=_json_script({"plots": plots, "traces": trace_figs}),
            plotly_js=_plotly_js(),
            generated=datetime.now().astimezone().isoformat(timespec="seconds"),
        )
    )


def default_output(run_dirs: list[Path]) -> Path:
    """One run: RUN_DIR/report.html. Several: into the last (newest) run's folder, named after the
    runs it is compared with."""
    last = Path(run_dirs[-1])
    if len(run_dirs) == 1:
        return last / "report.html"
    others = "+".join(Path(d).name for d in run_dirs[:-1])
    return last / f"report-vs-{others}.html"


def write_report(
    run_dirs: list[Path], output: Path | None = None, threshold_pct: float = DEFAULT_THRESHOLD_PCT
) -> Path:
    run_dirs = [Path(d) for d in run_dirs]
    for d in run_dirs:
        if not (d / "run.json").is_file():
            raise InputError(Problem(str(d), "RUN_DIR", "a run folder with run.json", "no run.json there"))
    out = Path(output) if output else default_output(run_dirs)
    text = build(run_dirs, threshold_pct)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
