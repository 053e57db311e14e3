"""Derived metrics of one case, from the agent's raw files (trials.jsonl, agent.json): each runtime's figures
from its analysis strategy (melt.analysis.strategies, where the definitions are), then telemetry, quality and
validity alike for all. Summaries are medians over counted trials; warm-ups are never counted.
"""

from __future__ import annotations

from melt import registry
from melt.analysis import sustained
from melt.analysis.busy import DEFAULT_MAX_FOREIGN_CPU_PCT, DEFAULT_MAX_STEAL_PCT, busy_reasons
from melt.analysis.machine_speed import drift_reason, loop_figures
from melt.analysis.quality import quality_figures
from melt.analysis.roofline import roofline_figures
from melt.analysis.strategies import for_runtime
from melt.analysis.telemetry_metrics import telemetry_figures
from melt.analysis.trace import Trace

METRIC_COLUMNS = registry.names()  # summary.csv's metric columns (melt.registry)
CV_LIMIT_PCT = 10.0
MIN_TRIALS_FOR_SPREAD = 3


def validity(
    n_trials: int, counted_s: float, cv: float | None, protocol: dict, agent_protocol: dict,
    max_cv_pct: float = CV_LIMIT_PCT,
) -> dict:  # fmt: skip
    """valid / semivalid / invalid, with every reason (pyperf-style warnings, as data). max_cv_pct: the spread
    limit (telemetry.max_cv_pct), in % of the mean. A sustained case (protocol.sustained_s) runs for a time, not
    a count, and its drift is what it measures: repetitions, min_duration_s and the spread limit do not apply
    (melt.analysis.sustained judges it)."""
    reasons, verdict = [], "valid"
    if n_trials == 0:
        return {"verdict": "invalid", "reasons": ["no counted trials"]}
    if protocol.get("sustained_s"):
        protocol = {**protocol, "repetitions": 0, "min_duration_s": 0}
        max_cv_pct = float("inf")
    if n_trials < protocol["repetitions"]:
        reasons.append(f"too few trials: {n_trials} < repetitions {protocol['repetitions']}")
    if n_trials < MIN_TRIALS_FOR_SPREAD:
        reasons.append(f"too few trials to judge spread: {n_trials} < {MIN_TRIALS_FOR_SPREAD}")
    if counted_s < protocol["min_duration_s"]:
        reasons.append(
            f"too short: counted trials took {counted_s:.3f} s < min_duration_s {protocol['min_duration_s']}"
        )
    if cv is not None and cv > max_cv_pct:
        reasons.append(f"spread over {max_cv_pct:g}%: cv {cv:.1f}%")
    if "max_repetitions" in agent_protocol.get("stopped_because", ""):
        reasons.append(f"stopped at the cap: {agent_protocol['stopped_because']}")
    if reasons:
        verdict = "semivalid"
    return {"verdict": verdict, "reasons": reasons}


def case_metrics(case: dict, trials: list[dict], agent: dict, trace: Trace | None = None) -> dict:
    """Everything metrics.json holds: the summary row's figures, spreads, validity, and why a
    figure is empty where it is."""
    runtime = case["runtime"]
    strategy = for_runtime(runtime)
    counted = [t for t in trials if not t.get("warmup")]
    applicable = registry.produced_by(runtime)
    figures, spreads, cv = strategy.figures(counted)
    figures["load_s"] = agent.get("load", {}).get("load_s")
    figures["peak_rss_mb"] = agent.get("peak_rss_mb")
    counted_s = sum(t["duration_s"] for t in counted)
    n_counted, protocol = strategy.counted_for_validity(counted, case["protocol"])
    max_cv = case.get("telemetry", {}).get("max_cv_pct", CV_LIMIT_PCT)
    verdict = validity(n_counted, counted_s, cv, protocol, agent.get("protocol", {}), max_cv)
    observed = telemetry_figures(runtime, counted, agent, trace, case.get("telemetry", {}))
    figures.update(observed["figures"])
    held = sustained.sustained_figures(runtime, counted, agent, trace) if sustained.is_sustained(case) else None
    if held:
        figures.update({k: v for k, v in held["figures"].items() if v is not None})
        if held["reasons"] and verdict["verdict"] == "valid":
            verdict["verdict"] = "semivalid"
        verdict["reasons"] += held["reasons"]
    quality, quality_missing, quality_details = quality_figures(case, agent)
    figures.update(quality)
    roofline = roofline_figures(case, figures, counted, agent)
    figures.update(roofline["figures"])
    gate = agent.get("gate") or {}
    if gate.get("timed_out"):
        verdict["reasons"].append(
            f"thermal gate timed out: {gate.get('temp_c')} C >= max_temp_c {gate['max_temp_c']} "
            f"after {gate['waited_s']:.0f} s"
        )
        verdict["verdict"] = "semivalid" if verdict["verdict"] == "valid" else verdict["verdict"]
    tele = case.get("telemetry", {})
    shared = busy_reasons(
        figures,
        tele.get("max_foreign_cpu_pct", DEFAULT_MAX_FOREIGN_CPU_PCT),
        tele.get("max_steal_pct", DEFAULT_MAX_STEAL_PCT),
    )
    if shared and verdict["verdict"] != "invalid":
        verdict["reasons"] += shared  # a figure taken on a shared machine is not the machine's own
        verdict["verdict"] = "semivalid"
    loop = loop_figures(agent)
    figures["ref_loop_mops_s"] = loop["mops_s"] if loop else None
    drifted = None if held else drift_reason(loop, tele.get("max_machine_drift_pct"))
    if drifted and verdict["verdict"] != "invalid":  # sustained: a device slowing under load is what it measures
        verdict["reasons"].append(drifted)
        verdict["verdict"] = "semivalid"
    summary: dict = {}
    missing: dict = {}
    for m in registry.METRICS:
        column = m.name
        if m.source == "case":
            continue
        value = figures.get(column)
        summary[column] = value
        if value is None:
            if m.source == "telemetry":
                missing[column] = observed["missing"].get(column, "not measurable")
            elif m.source == "quality":
                missing[column] = quality_missing.get(column, "not measured")
            elif m.source == "sustained":
                missing[column] = held["missing"].get(column, "not measured") if held else sustained.NOT_SUSTAINED
            elif m.source == "roofline":
                missing[column] = roofline["missing"].get(column, "not measured")
            elif column not in applicable and strategy.not_measured(m):
                missing[column] = strategy.not_measured(m)
            elif column in applicable:
                missing[column] = "not measurable: too few counted trials or tokens" if counted else "no counted trials"
            else:
                missing[column] = f"not applicable to runtime {runtime}"
    missing.update(strategy.missing_extra(counted))
    if summary.get("ref_loop_mops_s") is None and "ref_loop_mops_s" in applicable:
        missing["ref_loop_mops_s"] = (
            "telemetry.reference_loop is off"
            if tele.get("reference_loop") is False
            else "the agent did not time its reference loop (the case ended before its trials did, or an older agent)"
        )
    summary["power_method"] = figures.get("power_method", "none")
    summary["n_trials"] = n_counted
    summary["cv_pct"] = cv
    summary["validity"] = verdict["verdict"]
    return {
        "case_id": case["case_id"],
        "runtime": runtime,
        "summary": summary,
        "missing": missing,
        "spread": spreads,
        "cv_metric": strategy.cv_metric,
        "validity": verdict,
        "trials": {
            "counted": len(counted),
            "warmup": len(trials) - len(counted),
            "counted_duration_s": counted_s,
        },
        "memory": {
            "rss_after_load_mb": agent.get("rss_after_load_mb"),
            "peak_rss_after_load_mb": agent.get("peak_rss_after_load_mb"),
            "peak_rss_mb": agent.get("peak_rss_mb"),
        },
        "effective_params": agent.get("load", {}).get("effective_params"),
        "telemetry": observed["details"],
        "quality": quality_details,
        "sustained": held["details"] if held else None,
        "roofline": roofline["details"],
        "reference_loop": loop,  # the machine's own speed around the trials (melt.analysis.machine_speed)
    }
