"""Derived metrics of one case, from the agent's raw files (trials.jsonl, agent.json).

Definitions (DESIGN.md): ttft_s = request start (tokenisation included) to first token;
prefill_tok_s = prompt tokens / prompt-processing time; decode_tok_s = (n_gen - 1) /
(t_last_token - t_first_token); itl_* = gaps between generated tokens; e2e_s = request start to
last token. Summaries are medians over counted trials; warm-ups are never counted.
"""

from __future__ import annotations

from melt import registry
from melt.analysis.busy import DEFAULT_MAX_FOREIGN_CPU_PCT, DEFAULT_MAX_STEAL_PCT, busy_reasons
from melt.analysis.quality import quality_figures
from melt.analysis.roofline import roofline_figures
from melt.analysis.stats import cv_pct, percentile, spread
from melt.analysis.telemetry_metrics import telemetry_figures
from melt.analysis.trace import Trace

METRIC_COLUMNS = registry.names()  # summary.csv's metric columns (melt.registry)
NOT_FROM_LLAMA_BENCH = "not measured: llama.cpp's tools report totals (no per-token times or memory on phones)"
CV_LIMIT_PCT = 10.0
MIN_TRIALS_FOR_SPREAD = 3


def llama_perf_rates(t: dict) -> tuple[float | None, float | None, dict]:
    """What llama.cpp itself says of one llama_cpp trial ("llama.cpp says" figures), from its llama_perf
    counters (llama_perf_context_data, src/llama-context.cpp): (prefill tok/s, decode tok/s, {figure: why it
    is empty}). A figure is empty, never 0, when:
    - the trial has no llama_perf (a llama-cpp-python without llama_perf_context; its reason is kept);
    - its times are 0: llama.cpp timed nothing. A context made with no_perf=true counts tokens but not time
      (llama_context_default_params sets no_perf true; llama-cpp-python versions that pass it through give
      zeros);
    - its counts are not the work melt did (n_p_eval != n_prompt, n_eval != n_gen - 1): llama.cpp counts a
      1-token batch as eval, and reports max(1, n), so its rate would be of other work."""
    perf = t.get("llama_perf")
    if not isinstance(perf, dict):
        why = t.get("llama_perf_missing") or "the trial has no llama_perf counters"
        return None, None, {"llama_perf_prefill_tok_s": why, "llama_perf_decode_tok_s": why}
    why: dict = {}
    rates: dict = {}
    for key, ms, n, expected in (
        ("llama_perf_prefill_tok_s", "t_p_eval_ms", "n_p_eval", t.get("n_prompt")),
        ("llama_perf_decode_tok_s", "t_eval_ms", "n_eval", t["n_gen"] - 1 if t.get("n_gen") else None),
    ):
        t_ms, count = perf.get(ms), perf.get(n)
        if t_ms is None or count is None:
            why[key] = f"llama_perf has no {ms} / {n}"
        elif not t_ms > 0:
            why[key] = f"llama_perf_context says {ms} = {t_ms}: llama.cpp timed nothing (a context with no_perf on)"
        elif expected is not None and count != expected:
            why[key] = f"llama_perf_context counted {n} = {count} where melt ran {expected}: not the same work"
        else:
            rates[key] = count / t_ms * 1e3
    return rates.get("llama_perf_prefill_tok_s"), rates.get("llama_perf_decode_tok_s"), why


def llama_trial(t: dict) -> dict:
    """Per-trial figures of one llama.cpp trial. llama_perf_*_tok_s: llama_perf_rates (None where empty, the
    reasons under llama_perf_why)."""
    tok = t["token_ns"]
    prefill_s = (t["t_prefill_end_ns"] - t["t_tokenized_ns"]) / 1e9
    decode_s = (tok[-1] - tok[0]) / 1e9
    perf_prefill, perf_decode, perf_why = llama_perf_rates(t)
    return {
        "ttft_s": (tok[0] - t["t_start_ns"]) / 1e9,
        "prefill_tok_s": t["n_prompt"] / prefill_s if prefill_s > 0 else None,
        "decode_tok_s": (len(tok) - 1) / decode_s if len(tok) > 1 and decode_s > 0 else None,
        "e2e_s": (tok[-1] - t["t_start_ns"]) / 1e9,
        "itl_ms": [(b - a) / 1e6 for a, b in zip(tok, tok[1:], strict=False)],
        "llama_perf_prefill_tok_s": perf_prefill,
        "llama_perf_decode_tok_s": perf_decode,
        "llama_perf_why": perf_why,
    }


LLAMA_PERF_KEYS = ("llama_perf_prefill_tok_s", "llama_perf_decode_tok_s")


def _values(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def llama_perf_missing(rows: list[dict]) -> dict:
    """{llama_perf figure: why} for each "llama.cpp says" figure no counted trial gave (rows: llama_trial's);
    the distinct per-trial reasons, joined."""
    missing = {}
    for key in LLAMA_PERF_KEYS:
        if not _values(rows, key):
            whys = list(dict.fromkeys(r["llama_perf_why"].get(key, "") for r in rows)) or ["no counted trials"]
            missing[key] = "; ".join(w for w in whys if w) or "not measured"
    return missing


def _llama(counted: list[dict]) -> tuple[dict, dict, float | None]:
    rows = [llama_trial(t) for t in counted]
    spreads = {k: spread(_values(rows, k)) for k in ("ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s")}
    for key in LLAMA_PERF_KEYS:
        spreads[key] = spread(_values(rows, key))
    gaps = [g for r in rows for g in r["itl_ms"]]
    spreads["itl_ms"] = spread(gaps)
    figures = {k: (spreads[k] or {}).get("median") for k in ("ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s")}
    for q in (50, 90, 99):
        figures[f"itl_p{q}_ms"] = percentile(gaps, q)
    return figures, spreads, cv_pct(_values(rows, "decode_tok_s"))


def _onnx(counted: list[dict]) -> tuple[dict, dict, float | None]:
    latencies = [t["duration_s"] * 1e3 for t in counted]
    figures = {f"latency_p{q}_ms": percentile(latencies, q) for q in (50, 90, 99)}
    wall_s = (counted[-1]["t_end_ns"] - counted[0]["t_start_ns"]) / 1e9 if counted else 0
    figures["throughput_ips"] = len(counted) / wall_s if wall_s > 0 else None
    return figures, {"latency_ms": spread(latencies)}, cv_pct(latencies)


def _llama_bench(counted: list[dict]) -> tuple[dict, dict, float | None]:
    """llama-bench's per-repetition samples: ppP for prefill, tgN at depth P for decode; or
    llama-completion runs on real prompts, from llama.cpp's own end-of-run timings."""
    if any(t.get("mode") == "completion" for t in counted):
        spreads = {k: spread(_values(counted, k)) for k in ("prefill_tok_s", "decode_tok_s", "load_s")}
        figures = {k: (v or {}).get("median") for k, v in spreads.items() if k != "load_s"}
        return figures, spreads, cv_pct(_values(counted, "decode_tok_s"))
    pp = [t["tok_s"] for t in counted if t.get("test") == "pp"]
    tg = [t["tok_s"] for t in counted if t.get("test") == "tg"]
    spreads = {"prefill_tok_s": spread(pp), "decode_tok_s": spread(tg)}
    figures = {k: (v or {}).get("median") for k, v in spreads.items()}
    return figures, spreads, cv_pct(tg)


def validity(
    n_trials: int, counted_s: float, cv: float | None, protocol: dict, agent_protocol: dict,
    max_cv_pct: float = CV_LIMIT_PCT,
) -> dict:  # fmt: skip
    """valid / semivalid / invalid, with every reason (pyperf-style warnings, as data). max_cv_pct: the spread
    limit (telemetry.max_cv_pct), in % of the mean."""
    reasons, verdict = [], "valid"
    if n_trials == 0:
        return {"verdict": "invalid", "reasons": ["no counted trials"]}
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
    counted = [t for t in trials if not t.get("warmup")]
    applicable = registry.produced_by(runtime)
    if runtime == "llama_cpp":
        figures, spreads, cv = _llama(counted) if counted else ({}, {}, None)
    elif runtime == "llama_cpp_cli":
        figures, spreads, cv = _llama_bench(counted)
    else:
        figures, spreads, cv = _onnx(counted) if counted else ({}, {}, None)
    figures["load_s"] = agent.get("load", {}).get("load_s")
    figures["peak_rss_mb"] = agent.get("peak_rss_mb")
    counted_s = sum(t["duration_s"] for t in counted)
    protocol = case["protocol"]
    n_counted = len(counted)
    if runtime == "llama_cpp_cli":  # llama-bench: a repetition is one pp and one tg sample; no min duration
        if not any(t.get("mode") == "completion" for t in counted):
            n_counted = len([t for t in counted if t.get("test") == "tg"])
        protocol = {**protocol, "min_duration_s": 0}
    max_cv = case.get("telemetry", {}).get("max_cv_pct", CV_LIMIT_PCT)
    verdict = validity(n_counted, counted_s, cv, protocol, agent.get("protocol", {}), max_cv)
    observed = telemetry_figures(runtime, counted, agent, trace, case.get("telemetry", {}))
    figures.update(observed["figures"])
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
            elif m.source == "roofline":
                missing[column] = roofline["missing"].get(column, "not measured")
            elif runtime == "llama_cpp_cli" and "llama_cpp" in m.runtimes:  # what melt's agent measures
                missing[column] = NOT_FROM_LLAMA_BENCH
            elif column in applicable:
                missing[column] = "not measurable: too few counted trials or tokens" if counted else "no counted trials"
            else:
                missing[column] = f"not applicable to runtime {runtime}"
    if runtime == "llama_cpp":  # the "llama.cpp says" figures (spread only): why each is empty, where it is
        missing.update(llama_perf_missing([llama_trial(t) for t in counted]))
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
        "cv_metric": "latency_ms" if runtime == "onnxruntime" else "decode_tok_s",
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
        "roofline": roofline["details"],
    }
