"""Energy, temperature and throttling figures of one case from its trace and the agent's phases."""

from __future__ import annotations

from melt import registry
from melt.analysis.busy import busy_figures
from melt.analysis.energy import PhaseEnergy, integrate
from melt.analysis.strategies import for_runtime
from melt.analysis.strategies.base import ns_to_s as _s
from melt.analysis.throttle import throttle_spans
from melt.analysis.trace import Trace

TELEMETRY_COLUMNS = registry.names("telemetry")  # the summary columns the trace gives (melt.registry)
POWER_PROBES = ("ina2xx", "tegrastats", "vcgencmd", "android_battery", "nvml", "rapl")


def telemetry_figures(runtime: str, counted: list[dict], agent: dict, trace: Trace | None, telemetry: dict) -> dict:
    """{"figures": summary columns, "missing": column -> reason, "details": for metrics.json}."""
    columns = TELEMETRY_COLUMNS
    if trace is None or not trace.t_s:
        why = (
            "not measured: telemetry.interval_ms = 0"
            if not telemetry.get("interval_ms")
            else "no trace: the sampler wrote no samples"
        )
        return {"figures": {"power_method": "none"}, "missing": dict.fromkeys(columns, why), "details": {}}
    figures: dict = {"power_method": trace.power_method}
    missing: dict = {}
    details: dict = {"samples": len(trace.t_s), "channels": list(trace.columns), "power_method": trace.power_method}
    details["power_rule"] = trace.sensors.get("power_rule")
    details["missed_samples"] = int(sum(v or 0 for v in trace.columns.get("sampler.missed", [])))

    temps = [v for c in trace.channels("temp.") for _, v in trace.series(c)]
    figures["temp_max_c"] = max(temps) if temps else None
    if not temps:
        missing["temp_max_c"] = "no thermal sensor found on this device"
    details["temp_max_by_zone_c"] = {
        c: max((v for _, v in trace.series(c)), default=None) for c in trace.channels("temp.")
    }
    if agent.get("gate"):
        details["gate"] = agent["gate"]

    phases = agent.get("phases", {})
    trials_window = phases.get("trials")
    can_see_throttling = trace.channels("throttle.") or any(c.endswith("max_freq_mhz") for c in trace.columns)
    if not can_see_throttling:
        figures["throttled"] = None
        missing["throttled"] = "no frequency or throttle sensor on this device"
    elif trials_window:
        reasons = throttle_spans(trace, _s(trials_window[0]), _s(trials_window[1]))
        figures["throttled"] = bool(reasons)
        details["throttle_reasons"] = reasons
    else:
        figures["throttled"] = None
        missing["throttled"] = "no trials window"

    strategy = for_runtime(runtime)
    busy = busy_figures(trace, strategy.windows(counted, phases))
    for column in ("foreign_cpu_pct", "steal_pct"):
        figures[column] = busy[column]
        if busy[column] is None:
            missing[column] = busy["why"].get(column, "not measurable")
    details["busy"] = {k: v for k, v in busy.items() if k != "why"}

    energy_columns = ["power_avg_w", "energy_j", "energy_prefill_j", "energy_decode_j", "j_per_token"]
    if not trace.series("power.total_w") and not trace.series("energy.total_j"):
        looked = [
            m
            for name, p in trace.sensors.get("probes", {}).items()
            if name in POWER_PROBES
            for m in p.get("missing", [])
        ]
        rule = trace.sensors.get("power_rule") or ""
        if trace.sensors.get("power_total") is None and rule.startswith(("profile pin:", "none: rails")):
            why = f"no total power: {rule.split(': ', 1)[1]}"  # rails were there, but none is known to be the total
        else:
            why = "no power sensor found on this device" + (f" (looked for: {'; '.join(looked[:4])})" if looked else "")
        missing.update(dict.fromkeys(energy_columns, why))
        return {"figures": figures, "missing": missing, "details": details}

    idle = (_s(phases["idle"][0]), _s(phases["idle"][1])) if "idle" in phases else None
    pe = PhaseEnergy(trace, idle)
    details["idle_baseline_w"] = pe.baseline_w
    if pe.baseline_reason:
        details["idle_baseline_reason"] = pe.baseline_reason
    windows = strategy.energy(pe, trace, counted, phases, figures, missing, details)
    nets = [w for w in windows if w and w.get("net_j") is not None]
    total_s = sum(w["duration_s"] for w in nets)
    figures["power_avg_w"] = sum(w["net_j"] for w in nets) / total_s if nets and total_s > 0 else None
    if figures["power_avg_w"] is None:
        missing["power_avg_w"] = missing.get("energy_j", "not measurable")
    raws = [w for w in windows if w and w.get("raw_j") is not None]
    raw_s = sum(w["duration_s"] for w in raws)
    details["raw"]["power_avg_w"] = sum(w["raw_j"] for w in raws) / raw_s if raws and raw_s > 0 else None
    if pe.counter and pe.power and trials_window:  # the device's counter against our own integral
        t0, t1 = _s(trials_window[0]), _s(trials_window[1])
        integral, _ = integrate(pe.power, t0, t1)
        counted_j = pe.window(t0, t1).get("counter_j")
        if integral and counted_j:
            details["counter_cross_check"] = {
                "integral_j": integral,
                "counter_j": counted_j,
                "ratio": integral / counted_j,
            }
    return {"figures": figures, "missing": missing, "details": details}
