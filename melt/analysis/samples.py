"""Per-trial samples of the figures a comparison tests: one value per counted trial (ONNX: per
inference), from the raw files with the same definitions metrics.py summarises. A run-level figure
(load time, peak RSS) has one value per run and is kept too, marked as such.

The per-trial medians equal summary.csv's (both come from the same trial rows); inter-token
latency is tested on each trial's median gap, the summary pools the gaps of all trials.
"""

from __future__ import annotations

import statistics

from melt import registry
from melt.analysis.metrics import llama_trial
from melt.analysis.sustained import is_sustained
from melt.analysis.sustained import samples as sustained_samples

# metric -> "higher" or "lower" is better, for every metric a comparison looks at (melt.registry)
DIRECTION = registry.compared()
# one value per run: judged only against earlier runs (the catalog's history)
RUN_LEVEL = registry.judged_as("run") + registry.judged_as("info")
# shown with their change, never judged: a few milliseconds of load (page cache, the case's place
# in the run) and a tail percentile or rate of one run swing between identical runs more than the
# rest; the per-inference latency distribution (latency_p50_ms) is what is judged for ONNX models
INFORMATION_ONLY = registry.judged_as("info")


def _llama(counted: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s", "itl_p50_ms")}
    for t in counted:
        row = llama_trial(t)
        for k in ("ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s"):
            if row[k] is not None:
                out[k].append(row[k])
        if row["itl_ms"]:
            out["itl_p50_ms"].append(statistics.median(row["itl_ms"]))
    return out


def _llama_cli(counted: list[dict]) -> dict[str, list[float]]:
    if any(t.get("mode") == "completion" for t in counted):
        return {k: [t[k] for t in counted if t.get(k) is not None] for k in ("prefill_tok_s", "decode_tok_s")}
    return {
        "prefill_tok_s": [t["tok_s"] for t in counted if t.get("test") == "pp"],
        "decode_tok_s": [t["tok_s"] for t in counted if t.get("test") == "tg"],
    }


def _energy(metrics: dict) -> dict[str, list[float]]:
    per_trial = (metrics.get("telemetry") or {}).get("trials") or []
    energy, per_token = [], []
    for p in per_trial:
        if not isinstance(p, dict) or "request" not in p:
            continue
        if p["request"].get("net_j") is not None:
            energy.append(p["request"]["net_j"])
        if p["decode"].get("net_j") is not None and p.get("n_decode_tokens"):
            per_token.append(p["decode"]["net_j"] / p["n_decode_tokens"])
    return {"energy_j": energy, "j_per_token": per_token}


def samples_of(case: dict, trials: list[dict], metrics: dict) -> dict[str, list[float]]:
    """{metric: per-trial values} from a case's already-read case.json, trials and metrics.json."""
    counted = [t for t in trials if not t.get("warmup")]
    runtime = case["runtime"]
    if runtime == "llama_cpp":
        out = {**_llama(counted), **_energy(metrics)}
    elif runtime == "llama_cpp_cli":
        out = _llama_cli(counted)
    else:
        out = {"latency_p50_ms": [t["duration_s"] * 1e3 for t in counted]}
    if is_sustained(case):  # the sustained window's trials (melt.analysis.sustained)
        out.update(sustained_samples(runtime, counted, metrics.get("sustained") or {}))
    summary = metrics.get("summary", {})
    for metric in RUN_LEVEL:
        if summary.get(metric) is not None:
            out[metric] = [summary[metric]]
    return {k: v for k, v in out.items() if v}
