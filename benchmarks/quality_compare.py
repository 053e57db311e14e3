"""Does `melt compare` catch a model swapped for a worse quantisation? Two `melt run`s of one recipe, the second
with the model file replaced by a requantised copy (llama.cpp's own llama-quantize, built beside llama-bench by
benchmarks/build_llama_bench.sh), then `melt compare` between them: perplexity, KL divergence from the original
(a second model of the recipe, quality.reference), multiple-choice accuracy and the greedy outputs are judged.

The speed figures of the two runs are compared too (and a smaller file may well be faster); this benchmark
reads only the quality verdicts. Exit 0 when the requantised run's perplexity is judged worse by the paired
test, 1 when not, 2 on bad input. The printed output is kept in benchmarks/outputs/ (benchmarks/record.py).

Usage: .venv/bin/python benchmarks/quality_compare.py [--model M.gguf] [--quant Q2_K] [--n-ctx 512]
       [--threads 2] [--bin-dir ~/.cache/melt/llama-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import paired  # noqa: E402
from record import add_out_arg, kept_output  # noqa: E402

PROMPTS = ["The capital of France is", "Water boils at", "Once upon a time, in a small village,"]
RECIPE = """
name: quality-compare
models:
  - id: model
    runtime: llama_cpp
    source: {{path: model.gguf}}
    workload: {{prompt_tokens: 64, n_gen: 16}}
    params: {{threads: {threads}}}
    quality:
      perplexity: {{n_ctx: {n_ctx}, max_chunks: 16}}
      choices: {{}}
      outputs: {{prompts: prompts.jsonl, n_gen: 24}}
      reference: original
  - id: original
    runtime: llama_cpp
    source: {{path: original.gguf}}
    workload: {{prompt_tokens: 64, n_gen: 16}}
    params: {{threads: {threads}}}
    quality:
      perplexity: {{n_ctx: {n_ctx}, max_chunks: 16}}
protocol: {{warmup: 1, repetitions: 3, min_duration_s: 0}}
telemetry: {{interval_ms: 0, idle_s: 0}}
"""
SHOWN = ("ppl", "kld_mean", "accuracy_pct", "accuracy_norm_pct", "outputs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF file (default: the quickstart's Gemma 3 270M Q4_K_M)")
    ap.add_argument("--quant", default="Q2_K", help="llama-quantize's type for the worse copy")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bin-dir", default=str(Path.home() / ".cache" / "melt" / "llama-bench"))
    add_out_arg(ap)
    args = ap.parse_args(argv)
    try:
        model = paired.model_or_default(args.model)
    except ValueError as e:
        return paired.bad_input(str(e))
    quantize = Path(args.bin_dir) / "llama-quantize"
    for name, path in (("--model", model), ("llama-quantize under --bin-dir", quantize)):
        if not Path(path).is_file():
            return paired.bad_input(f"{name} {path}: no such file (benchmarks/build_llama_bench.sh builds it)")
    with kept_output("quality_compare", args.out, argv), tempfile.TemporaryDirectory(prefix="melt-qc-") as tmp:
        work = Path(tmp)
        print(paired.machine_line(paired.machine_info()))
        worse = work / f"requantised-{args.quant}.gguf"
        q = subprocess.run([str(quantize), "--allow-requantize", model, str(worse), args.quant],
                           capture_output=True, text=True)  # fmt: skip
        if q.returncode != 0:
            print(q.stdout[-1500:] + q.stderr[-1500:])
            return paired.bad_input(f"llama-quantize to {args.quant} failed")
        print(f"model {model} ({Path(model).stat().st_size / 1e6:.0f} MB); requantised to {args.quant} with "
              f"--allow-requantize ({worse.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
        os.symlink(model, work / "original.gguf")
        (work / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
        (work / "recipe.yaml").write_text(RECIPE.format(threads=args.threads, n_ctx=args.n_ctx))
        for run_id, path in (("original", model), ("swapped", worse)):
            (work / "model.gguf").unlink(missing_ok=True)
            os.symlink(path, work / "model.gguf")
            done = paired.melt("run", "recipe.yaml", "--results", "results", "--run-id", run_id, cwd=work)
            print(f"melt run {run_id} (model.gguf -> {Path(path).name}): exit {done.returncode}")
            if done.returncode != 0:
                print(done.stdout[-2000:] + done.stderr[-2000:])
                return 1
        cmp = paired.melt("compare", "results/original", "results/swapped", "--results", "results", cwd=work)
        print(f"melt compare original swapped: exit {cmp.returncode}")
        verdicts = json.loads((work / "results" / "swapped" / "compare.json").read_text())["verdicts"]
        ppl = None
        for v in verdicts:
            if v["label"].startswith("model ") and v["metric"] in SHOWN:
                change = f"{v['change_pct']:+.2f}%" if v["change_pct"] is not None else ""
                base = f"{v['base_median']:.4g} -> {v['new_median']:.4g} " if v["base_median"] is not None else ""
                print(f"  {v['metric']:<18} {v['verdict']:<16} {base}{change}  {v['reason']}")
                ppl = v if v["metric"] == "ppl" else ppl
        ok = ppl is not None and ppl["verdict"] == "worse"
        print(f"perplexity of the {args.quant} copy judged worse: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
