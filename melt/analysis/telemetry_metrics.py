"""Energy, temperature and throttling figures of one case from its trace and the agent's phases."""

from __future__ import annotations

import statistics

from melt import registry
from melt.analysis.busy import busy_figures
from melt.analysis.energy import PhaseEnergy, integrate
from melt.analysis.trace import Trace

TELEMETRY_COLUMNS = registry.names("telemetry")  # the summary columns the trace gives (melt.registry)
POWER_PROBES = ("ina2xx", "tegrastats", "vcgencmd", "android_battery", "nvml", "rapl")
BUSY_UTIL_PCT = 50.0  # a core counts as busy above this utilisation
CAPPED_RATIO = 0.9  # and as held below max when its frequency is under 90% of its maximum for two intervals


def _s(ns: int) -> float:
    return ns / 1e9


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def throttle_spans(trace: Trace, t0: float, t1: float) -> list[str]:
    """Why the device was throttled within [t0, t1] (empty: it was not, as far as its sensors tell)."""
    return [reason for reason, _times in throttle_marks(trace, t0, t1)]


def throttle_marks(trace: Trace, t0: float, t1: float) -> list[tuple[str, list[float]]]:
    """(why, the trace times it was seen) for each way the device showed throttling within [t0, t1]: a throttle
    flag set, or a clock held under CAPPED_RATIO of its maximum while busy (empty: it was not throttled)."""
    marks = []
    for channel in trace.channels("throttle."):
        times = [t for t, v in trace.window(channel, t0, t1) if v]
        if times:
            marks.append((f"{channel} set", times))
    util = dict(trace.window("cpu.util_pct", t0, t1))
    for freq_channel in trace.channels("cpu"):
        if not freq_channel.endswith(".freq_mhz") or freq_channel.endswith("max_freq_mhz"):
            continue
        top = dict(trace.window(freq_channel.replace(".freq_mhz", ".max_freq_mhz"), t0, t1))
        # utilisation covers the interval since the previous sample, a frequency is one instant: the clock must be
        # low at both ends of a busy interval, and over two such intervals in a row, since the probes read one
        # after another and a clock that drops as the load ends can fall between the /proc/stat and cpufreq reads
        low = [(t, t in top and f < CAPPED_RATIO * top[t]) for t, f in trace.window(freq_channel, t0, t1)]
        held = [(t, was and now and util.get(t, 0) >= BUSY_UTIL_PCT) for (_, was), (t, now) in zip(low, low[1:])]
        capped = [
            t for i, (t, h) in enumerate(held)
            if h and ((i > 0 and held[i - 1][1]) or (i + 1 < len(held) and held[i + 1][1]))
        ]  # fmt: skip
        if capped:
            marks.append((f"{freq_channel} under {CAPPED_RATIO:.0%} of max while busy ({len(capped)} samples)", capped))
    return marks


def measured_windows(runtime: str, counted: list[dict], phases: dict) -> list[tuple[float, float]]:
    """The windows in which the counted trials were measured, in trace seconds: each llama.cpp request,
    each llama-completion run, llama-bench's prefill and decode runs, or ONNX's whole counted span."""
    if runtime == "llama_cpp":
        return [(_s(t["t_start_ns"]), _s(t["token_ns"][-1])) for t in counted if t.get("token_ns")]
    if runtime == "llama_cpp_cli":
        if any(t.get("mode") == "completion" for t in counted):
            return [
                (_s(t["t_start_ns"]), _s(t["t_end_ns"])) for t in counted if t.get("t_start_ns") and t.get("t_end_ns")
            ]
        return [(_s(phases[p][0]), _s(phases[p][1])) for p in ("prefill", "decode") if p in phases]
    if counted and counted[0].get("t_start_ns") and counted[-1].get("t_end_ns"):
        return [(_s(counted[0]["t_start_ns"]), _s(counted[-1]["t_end_ns"]))]
    return []


def _llama_bench_energy(pe, counted: list[dict], phases: dict, figures: dict, missing: dict, details: dict) -> list:
    """llama-bench does not stamp its repetitions: per repetition, energy = the mean net power over
    its run (model load and its warm-up included) x the repetition's own time. Said in metrics.json."""
    if any(t.get("mode") == "completion" for t in counted):
        details["energy_method"] = "each llama-completion run, from its start to its end (model load included)"
        windows = [pe.window(_s(t["t_start_ns"]), _s(t["t_end_ns"])) for t in counted if t.get("t_start_ns")]
        details["trials"] = windows
        figures["energy_j"] = _median([w["net_j"] for w in windows])
        if figures["energy_j"] is None:
            missing["energy_j"] = windows[0].get("reason", "not measurable") if windows else "no trial marks"
        for column in ("energy_prefill_j", "energy_decode_j", "j_per_token"):
            figures[column] = None
            missing[column] = "not measurable: llama-completion does not time-stamp its prefill and decode"
        details["raw"] = {}
        return windows
    details["energy_method"] = "mean net power over each llama-bench run x repetition time"
    out, windows = {}, []
    for phase, test in (("prefill", "pp"), ("decode", "tg")):
        samples = [t for t in counted if t.get("test") == test]
        if phase not in phases or not samples:
            missing[f"energy_{phase}_j"] = f"no {phase} phase marks or samples"
            out[phase] = None
            continue
        w = pe.window(_s(phases[phase][0]), _s(phases[phase][1]))
        details[f"{phase}_window"] = w
        if w.get("net_j") is None:
            missing[f"energy_{phase}_j"] = w.get("reason", "not measurable")
            out[phase] = None
            continue
        per_rep_s = statistics.median(t["duration_s"] for t in samples)
        out[phase] = w["net_j"] / w["duration_s"] * per_rep_s
        windows.append(w)
    figures["energy_prefill_j"], figures["energy_decode_j"] = out.get("prefill"), out.get("decode")
    n_gen = next((t["n_gen"] for t in counted if t.get("test") == "tg"), None)
    figures["j_per_token"] = out["decode"] / n_gen if out.get("decode") is not None and n_gen else None
    if figures["j_per_token"] is None:
        missing["j_per_token"] = missing.get("energy_decode_j", "not measurable")
    both = [v for v in out.values() if v is not None]
    figures["energy_j"] = sum(both) if len(both) == 2 else None
    if figures["energy_j"] is None:
        missing["energy_j"] = "needs both the prefill and the decode energy"
    details["raw"] = {}
    return windows


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

    busy = busy_figures(trace, measured_windows(runtime, counted, phases))
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
    if runtime == "llama_cpp":
        per_trial = []
        for t in counted:
            tok = t["token_ns"]
            per_trial.append(
                {
                    "trial": t["trial"],
                    "n_decode_tokens": len(tok) - 1,
                    "prefill": pe.window(_s(t["t_tokenized_ns"]), _s(t["t_prefill_end_ns"])),
                    "decode": pe.window(_s(tok[0]), _s(tok[-1])),
                    "request": pe.window(_s(t["t_start_ns"]), _s(tok[-1])),
                    "throttled": throttle_spans(trace, _s(t["t_start_ns"]), _s(tok[-1])),
                }
            )
        details["trials"] = per_trial
        figures["energy_j"] = _median([p["request"]["net_j"] for p in per_trial])
        figures["energy_prefill_j"] = _median([p["prefill"]["net_j"] for p in per_trial])
        figures["energy_decode_j"] = _median([p["decode"]["net_j"] for p in per_trial])
        figures["j_per_token"] = _median(
            [
                p["decode"]["net_j"] / p["n_decode_tokens"]
                for p in per_trial
                if p["decode"]["net_j"] is not None and p["n_decode_tokens"]
            ]
        )
        windows = [p["request"] for p in per_trial]
        for column, key in (("energy_j", "request"), ("energy_prefill_j", "prefill"), ("energy_decode_j", "decode")):
            if figures[column] is None and per_trial:
                missing[column] = per_trial[0][key].get("reason", "not measurable")
        if figures["j_per_token"] is None:
            missing["j_per_token"] = missing.get("energy_decode_j", "not measurable")
        details["raw"] = {
            "energy_j": _median([p["request"]["raw_j"] for p in per_trial]),
            "energy_prefill_j": _median([p["prefill"]["raw_j"] for p in per_trial]),
            "energy_decode_j": _median([p["decode"]["raw_j"] for p in per_trial]),
        }
    elif runtime == "llama_cpp_cli":
        windows = _llama_bench_energy(pe, counted, phases, figures, missing, details)
    else:
        whole = pe.window(_s(counted[0]["t_start_ns"]), _s(counted[-1]["t_end_ns"])) if counted else None
        windows = [whole] if whole else []
        n = len(counted)
        figures["energy_j"] = whole["net_j"] / n if whole and whole["net_j"] is not None else None
        if figures["energy_j"] is None:
            missing["energy_j"] = (whole or {}).get("reason", "no counted trials")
        details["counted_window"] = whole
        details["raw"] = {"energy_j": whole["raw_j"] / n if whole and whole["raw_j"] is not None else None}
        for column in ("energy_prefill_j", "energy_decode_j", "j_per_token"):
            missing[column] = "not applicable to runtime onnxruntime"
            figures[column] = None
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
