"""runtime llama_cpp: melt's agent time-stamps every token of every request (melt.runtimes.llama_cpp).

Definitions (DESIGN.md): ttft_s = request start (tokenisation included) to first token; prefill_tok_s = prompt
tokens / prompt-processing time; decode_tok_s = (n_gen - 1) / (t_last_token - t_first_token); itl_* = gaps between
generated tokens; e2e_s = request start to last token. Summaries are medians over counted trials."""

from __future__ import annotations

import statistics

from melt.analysis.stats import cv_pct, percentile, spread
from melt.analysis.strategies.base import RuntimeAnalysis, median_of, ns_to_s
from melt.analysis.throttle import throttle_spans

LLAMA_PERF_KEYS = ("llama_perf_prefill_tok_s", "llama_perf_decode_tok_s")
REQUEST_FIGURES = ("ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s")


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


def energy_samples(metrics: dict) -> dict[str, list[float]]:
    """Per-trial energy (J per request, J per decoded token) from metrics.json's telemetry.trials."""
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


class LlamaCppAnalysis(RuntimeAnalysis):
    runtime = "llama_cpp"
    quality_asks = ("perplexity", "choices", "outputs", "reference")

    def figures(self, counted: list[dict]) -> tuple[dict, dict, float | None]:
        if not counted:
            return {}, {}, None
        rows = [llama_trial(t) for t in counted]
        spreads = {k: spread(_values(rows, k)) for k in REQUEST_FIGURES}
        for key in LLAMA_PERF_KEYS:
            spreads[key] = spread(_values(rows, key))
        gaps = [g for r in rows for g in r["itl_ms"]]
        spreads["itl_ms"] = spread(gaps)
        figures = {k: (spreads[k] or {}).get("median") for k in REQUEST_FIGURES}
        for q in (50, 90, 99):
            figures[f"itl_p{q}_ms"] = percentile(gaps, q)
        return figures, spreads, cv_pct(_values(rows, "decode_tok_s"))

    def samples(self, counted: list[dict], metrics: dict) -> dict[str, list[float]]:
        """Inter-token latency is sampled as each trial's median gap (the summary pools every trial's gaps)."""
        out: dict[str, list[float]] = {k: [] for k in (*REQUEST_FIGURES, "itl_p50_ms")}
        for t in counted:
            row = llama_trial(t)
            for k in REQUEST_FIGURES:
                if row[k] is not None:
                    out[k].append(row[k])
            if row["itl_ms"]:
                out["itl_p50_ms"].append(statistics.median(row["itl_ms"]))
        return {**out, **energy_samples(metrics)}

    def windows(self, counted: list[dict], phases: dict) -> list[tuple[float, float]]:
        """Each request, from its start to its last token."""
        return [(ns_to_s(t["t_start_ns"]), ns_to_s(t["token_ns"][-1])) for t in counted if t.get("token_ns")]

    def energy(self, pe, trace, counted: list[dict], phases: dict, figures: dict, missing: dict, details: dict) -> list:
        """Per trial: prefill, decode and the whole request, each from its own stamps."""
        per_trial = []
        for t in counted:
            tok = t["token_ns"]
            per_trial.append(
                {
                    "trial": t["trial"],
                    "n_decode_tokens": len(tok) - 1,
                    "prefill": pe.window(ns_to_s(t["t_tokenized_ns"]), ns_to_s(t["t_prefill_end_ns"])),
                    "decode": pe.window(ns_to_s(tok[0]), ns_to_s(tok[-1])),
                    "request": pe.window(ns_to_s(t["t_start_ns"]), ns_to_s(tok[-1])),
                    "throttled": throttle_spans(trace, ns_to_s(t["t_start_ns"]), ns_to_s(tok[-1])),
                }
            )
        details["trials"] = per_trial
        figures["energy_j"] = median_of([p["request"]["net_j"] for p in per_trial])
        figures["energy_prefill_j"] = median_of([p["prefill"]["net_j"] for p in per_trial])
        figures["energy_decode_j"] = median_of([p["decode"]["net_j"] for p in per_trial])
        figures["j_per_token"] = median_of(
            [
                p["decode"]["net_j"] / p["n_decode_tokens"]
                for p in per_trial
                if p["decode"]["net_j"] is not None and p["n_decode_tokens"]
            ]
        )
        for column, key in (("energy_j", "request"), ("energy_prefill_j", "prefill"), ("energy_decode_j", "decode")):
            if figures[column] is None and per_trial:
                missing[column] = per_trial[0][key].get("reason", "not measurable")
        if figures["j_per_token"] is None:
            missing["j_per_token"] = missing.get("energy_decode_j", "not measurable")
        details["raw"] = {
            "energy_j": median_of([p["request"]["raw_j"] for p in per_trial]),
            "energy_prefill_j": median_of([p["prefill"]["raw_j"] for p in per_trial]),
            "energy_decode_j": median_of([p["decode"]["raw_j"] for p in per_trial]),
        }
        return [p["request"] for p in per_trial]

    def trial_value(self, t: dict) -> float | None:
        return llama_trial(t)["decode_tok_s"] if t.get("token_ns") else None

    def missing_extra(self, counted: list[dict]) -> dict:
        """The "llama.cpp says" figures (spread only): why each is empty, where it is."""
        return llama_perf_missing([llama_trial(t) for t in counted])
