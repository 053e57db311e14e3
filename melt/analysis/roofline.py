"""The memory roofline of a llama.cpp case: the bytes a decoded token reads against what the device's
memory delivers, and the FLOP rate of prefill against the device's peak, where its profile gives one.

At run time `case_facts` puts into case.json what the figures need (the GGUF's per-class bytes from
melt.gguf_bytes, the device's measured bandwidth from melt.devices.bandwidth, the profile's datasheet
limits), so `roofline_figures` works from the run's files alone.

Formulas (units: MB = 1e6 bytes, GB/s = 1e9 bytes/s, GFLOP/s = 1e9 FLOP/s):
- decode_bytes_per_token_mb = (weights a token reads + KV cache at the decode's depth) / 1e6.
  Weights: melt.gguf_bytes (llama.cpp's tensor layout, src/llama-model.cpp): every block tensor, one row of
  token_embd, the output matrix in full (token_embd in full where it is tied: no output.weight).
  KV: sum over layers of cells(l) x (n_embd_k(l) x bytes/element of cache_type_k + n_embd_v(l) x
  bytes/element of cache_type_v), n_embd_k = n_head_kv x key_length (gguf spec: {arch}.attention.*);
  bytes/element of a cache type: ggml's block size and type size (gguf.GGML_QUANT_SIZES: f16 2, q8_0 34/32).
  cells(l): the mean over the timed decode steps of the cells a step attends: after a P-token prompt, the
  steps that produce tokens 2..n_gen attend P+1 .. P+n_gen-1 cells (mean P + n_gen/2), each capped at the
  window on a sliding-window layer (llama.cpp's LLAMA_SWA_TYPE_STANDARD: the last n_swa positions).
  The cache type is the one the runtime reported (agent.json load.effective_params), else the case's,
  else llama.cpp's default f16. llama.cpp pads the KV view it reads to 256 cells; the padding is not
  counted: this is what a token must read, not what one build happens to.
- decode_bw_gbs = decode_bytes_per_token x decode_tok_s / 1e9.
- decode_roofline_pct = decode_bw_gbs / mem_bw_read_gbs x 100: decode reads, so the measured *read*
  bandwidth is the roof (STREAM-style best of repetitions: melt.agent.bandwidth). Where the run did not
  measure it, the profile's limits.mem_bandwidth_gbs (datasheet) stands in and metrics.json says so;
  with neither, the figure is empty with the reason.
- prefill_gflops_s = FLOP per prompt token x prefill_tok_s / 1e9, FLOP per prompt token =
  2 x matmul weights (attention + FFN: one multiply-add per weight; Kaplan et al. 2020, "Scaling Laws for
  Neural Language Models", table 1) + 2 x 2 x sum over layers of d_attn(l) x ctx(l) (QK^T and AV: PaLM,
  Chowdhery et al. 2022, appendix B) + 2 x output weights / P (llama.cpp computes the logits of a batch's
  last token only: llama_batch_get_one). ctx(l) = mean over prompt positions i = 1..P of min(i, window).
  d_attn = n_head x key_length.
- prefill_peak_pct = prefill_gflops_s / limits.peak_gflops x 100, where the profile gives it.
"""

from __future__ import annotations

import statistics

DEFAULT_CACHE_TYPE = "f16"  # llama.cpp's default type_k and type_v (llama_context_default_params)
FIGURES = ("mem_bw_read_gbs", "mem_bw_copy_gbs", "decode_bytes_per_token_mb", "decode_bw_gbs",
           "decode_roofline_pct", "prefill_gflops_s", "prefill_peak_pct")  # fmt: skip
GGUF_RUNTIMES = ("llama_cpp", "llama_cpp_cli")


def case_facts(runtime: str, model_path, limits: dict, bandwidth: dict | None, cache: dict | None = None) -> dict:
    """What case.json keeps for the roofline: {"model": melt.gguf_bytes.model_facts or {"error"}, "bandwidth":
    the run's measured record (melt.devices.bandwidth) or None, "datasheet_gbs", "peak_gflops"}. cache: a dict
    the caller keeps across cases (model path -> facts), so a GGUF is read once a run."""
    facts: dict = {
        "bandwidth": bandwidth,
        "datasheet_gbs": limits.get("mem_bandwidth_gbs"),
        "peak_gflops": limits.get("peak_gflops"),
    }
    if runtime in GGUF_RUNTIMES:
        key = str(model_path)
        if cache is None or key not in cache:
            from melt.gguf_bytes import GgufError, model_facts

            try:
                found = model_facts(model_path)
            except (GgufError, OSError, KeyError, ValueError) as e:
                found = {"error": f"{type(e).__name__}: {e}"}
            if cache is not None:
                cache[key] = found
        facts["model"] = cache[key] if cache is not None else found
    return facts


def _mean_cells(first: int, last: int, window: int | None) -> float:
    """Mean over n = first..last of min(n, window)."""
    if last < first:
        return 0.0
    values = range(first, last + 1)
    return sum(min(n, window) if window else n for n in values) / len(values)


def kv_bytes(model: dict, cells_first: int, cells_last: int, type_k: str, type_v: str) -> tuple[float, list[float]]:
    """(KV bytes a decode step reads on average, mean cells per layer) for steps attending cells_first..cells_last
    cells (module docstring)."""
    from melt.gguf_bytes import kv_bytes_per_element

    bk, bv = kv_bytes_per_element(type_k), kv_bytes_per_element(type_v)
    kv = model["kv"]
    total, cells = 0.0, []
    for layer in range(model["n_layer"]):
        window = kv["window"] if kv["swa"][layer] else None
        c = _mean_cells(cells_first, cells_last, window)
        cells.append(c)
        total += c * (kv["n_embd_k"][layer] * bk + kv["n_embd_v"][layer] * bv)
    return total, cells


def prefill_flops_per_token(model: dict, n_prompt: int) -> float:
    """FLOP per prompt token of a P-token prefill (module docstring)."""
    kv = model["kv"]
    attention = 0.0
    for layer in range(model["n_layer"]):
        window = kv["window"] if kv["swa"][layer] else None
        attention += 4 * model["d_attn"][layer] * _mean_cells(1, n_prompt, window)
    return 2 * model["matmul_params"] + attention + 2 * model["output_params"] / n_prompt


def _prompt_tokens(case: dict, counted: list[dict]) -> int | None:
    p = case.get("workload", {}).get("prompt_tokens")
    if isinstance(p, int):
        return p
    seen = [t["n_prompt"] for t in counted if isinstance(t.get("n_prompt"), int)]
    return int(statistics.median(seen)) if seen else None


def _cache_type(which: str, case: dict, agent: dict) -> tuple[str, str]:
    effective = (agent.get("load") or {}).get("effective_params") or {}
    if effective.get(which):
        return effective[which], "the runtime's own report"
    if case.get("params", {}).get(which):
        return case["params"][which], "the case's params"
    return DEFAULT_CACHE_TYPE, "llama.cpp's default"


def roofline_figures(case: dict, figures: dict, counted: list[dict], agent: dict) -> dict:
    """{"figures": {FIGURES...}, "missing": {figure: why}, "details": {...}} of one case. figures: the case's
    speed figures (decode_tok_s, prefill_tok_s) already computed; counted: its counted trials; agent: agent.json."""
    facts = case.get("roofline") or {}
    out: dict = dict.fromkeys(FIGURES)
    missing: dict = {}
    details: dict = {}
    bw = facts.get("bandwidth") or {}
    for key in ("mem_bw_read_gbs", "mem_bw_copy_gbs"):
        out[key] = bw.get(key)
        if out[key] is None:
            missing[key] = (
                bw.get("why") or "not measured"
                if bw
                else "not measured: the recipe's telemetry.bandwidth is false (true measures it once a run)"
            )
    if bw.get("method"):
        details["bandwidth_method"] = bw["method"]
        details["read_median_gbs"] = bw.get("read_median_gbs")
    details["datasheet_gbs"] = facts.get("datasheet_gbs")
    runtime = case.get("runtime")
    if runtime not in GGUF_RUNTIMES:
        for key in FIGURES[2:]:
            missing[key] = f"not applicable to runtime {runtime}"
        return {"figures": out, "missing": missing, "details": details}
    model = facts.get("model")
    if not model or "error" in model:
        why = f"the GGUF could not be read: {model['error']}" if model else "case.json has no GGUF facts (roofline)"
        for key in FIGURES[2:]:
            missing[key] = why
        return {"figures": out, "missing": missing, "details": details}
    n_prompt = _prompt_tokens(case, counted)
    n_gen = case.get("workload", {}).get("n_gen")
    weights = sum(model["decode_bytes"].values())
    by_class = {k: v / 1e6 for k, v in model["decode_bytes"].items()}
    details.update(tied_output=model["tied_output"], types_mb={
        c: {t: b / 1e6 for t, b in types.items()} for c, types in model["types"].items() if types
    })  # fmt: skip
    decode_tok_s = figures.get("decode_tok_s")
    if n_prompt is None or not n_gen:
        for key in ("decode_bytes_per_token_mb", "decode_bw_gbs", "decode_roofline_pct"):
            missing[key] = "the prompt length is not known: no KV depth"
    else:
        type_k, from_k = _cache_type("cache_type_k", case, agent)
        type_v, from_v = _cache_type("cache_type_v", case, agent)
        kv, cells = kv_bytes(model, n_prompt + 1, n_prompt + n_gen - 1, type_k, type_v)
        by_class["kv"] = kv / 1e6
        per_token = weights + kv
        out["decode_bytes_per_token_mb"] = per_token / 1e6
        details.update(
            bytes_per_token_mb=by_class, kv_cache_type=[type_k, type_v], kv_cache_type_from=[from_k, from_v],
            kv_depth_mean_cells=n_prompt + n_gen / 2, kv_cells_per_layer=cells, swa=model["kv"]["swa_how"],
        )  # fmt: skip
        if decode_tok_s is None:
            missing["decode_bw_gbs"] = missing["decode_roofline_pct"] = "no decode_tok_s"
        else:
            out["decode_bw_gbs"] = per_token * decode_tok_s / 1e9
            roof, basis = out["mem_bw_read_gbs"], "measured read bandwidth (mem_bw_read_gbs)"
            if roof is None and facts.get("datasheet_gbs"):
                roof = facts["datasheet_gbs"]
                basis = "the profile's limits.mem_bandwidth_gbs (datasheet): the run measured none"
            if roof is None:
                missing["decode_roofline_pct"] = (
                    "no memory bandwidth: set telemetry.bandwidth: true in the recipe, "
                    "or limits.mem_bandwidth_gbs in the device profile"
                )
            else:
                out["decode_roofline_pct"] = out["decode_bw_gbs"] / roof * 100
                details.update(roofline_gbs=roof, roofline_basis=basis)
    prefill_tok_s = figures.get("prefill_tok_s")
    if n_prompt is None or prefill_tok_s is None:
        why = "the prompt length is not known" if n_prompt is None else "no prefill_tok_s"
        missing["prefill_gflops_s"] = missing["prefill_peak_pct"] = why
    else:
        flops = prefill_flops_per_token(model, n_prompt)
        details["prefill_flop_per_token"] = flops
        out["prefill_gflops_s"] = flops * prefill_tok_s / 1e9
        peak = facts.get("peak_gflops")
        if peak:
            out["prefill_peak_pct"] = out["prefill_gflops_s"] / peak * 100
        else:
            missing["prefill_peak_pct"] = "the device profile gives no limits.peak_gflops"
    return {"figures": out, "missing": missing, "details": details}
