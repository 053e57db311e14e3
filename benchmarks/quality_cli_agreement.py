"""Do melt's two ways of measuring quality agree? One `melt run` on this machine measures the same two models
(Gemma 3 270M Q4_K_M and a requantised copy) both ways:

- runtime llama_cpp: melt's agent scores the text itself (perplexity as llama-perplexity does; KL from the
  reference's top-128 log-probabilities: a lower bound `kld_mean` and an upper bound `kld_upper_mean`);
- runtime llama_cpp_cli: llama.cpp's own llama-perplexity does (as on a phone), with KL over the full vocabulary
  from its 16-bit base file.

It prints both perplexities (their ratio must lie within 0.5%, the issue's bar for melt against the tool) and
whether the tool's full-vocabulary KL lies within the agent's [lower, upper] bounds. Figures are counts, not
timings, so a busy machine does not change them. Exit 0 when both hold, 1 when not, 2 on bad input; the
output is kept in benchmarks/outputs/ (benchmarks/record.py).

Usage: .venv/bin/python benchmarks/quality_cli_agreement.py [--model M.gguf] [--quant Q2_K] [--n-ctx 512]
       [--chunks 4] [--threads 2] [--bin-dir ~/.cache/melt/llama-bench]
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

MODEL = """  - id: {id}
    runtime: {runtime}
    source: {{path: {file}}}
    workload: {{prompt_tokens: 16, n_gen: 4}}
    params: {{threads: {threads}}}
    quality:
      perplexity: {{n_ctx: {n_ctx}, max_chunks: {chunks}}}
{ref}"""
PROFILE = "name: local-tools\nplatform: linux\ntransport: {{kind: local}}\nllama_cpp_bin: {bin}\nsensors: {{root: /}}\n"
TOLERANCE = 0.005  # perplexities within 0.5%


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF file (default: the quickstart's Gemma 3 270M Q4_K_M)")
    ap.add_argument("--quant", default="Q2_K", help="llama-quantize's type for the second model")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bin-dir", default=str(Path.home() / ".cache" / "melt" / "llama-bench"))
    add_out_arg(ap)
    args = ap.parse_args(argv)
    try:
        model = paired.model_or_default(args.model)
    except ValueError as e:
        return paired.bad_input(str(e))
    bin_dir = Path(args.bin_dir)
    for tool in ("llama-quantize", "llama-perplexity", "llama-bench"):
        if not (bin_dir / tool).is_file():
            return paired.bad_input(f"{bin_dir / tool}: no such file (benchmarks/build_llama_bench.sh builds it)")
    with kept_output("quality_cli_agreement", args.out, argv), tempfile.TemporaryDirectory(prefix="melt-qa-") as tmp:
        work = Path(tmp)
        print(paired.machine_line(paired.machine_info()))
        worse = work / f"requantised-{args.quant}.gguf"
        q = subprocess.run([str(bin_dir / "llama-quantize"), "--allow-requantize", model, str(worse), args.quant],
                           capture_output=True, text=True)  # fmt: skip
        if q.returncode != 0:
            print(q.stdout[-1500:] + q.stderr[-1500:])
            return paired.bad_input(f"llama-quantize to {args.quant} failed")
        os.symlink(model, work / "original.gguf")
        print(f"models: {Path(model).name} and its {args.quant} copy; perplexity text: melt's shipped text, "
              f"{args.chunks} windows of {args.n_ctx} tokens; threads {args.threads}")  # fmt: skip
        body = "name: quality-agreement\nmodels:\n"
        for runtime, prefix in (("llama_cpp", "agent"), ("llama_cpp_cli", "tools")):
            against = f"      reference: {prefix}-original\n"
            for id_, file, ref in ((f"{prefix}-original", "original.gguf", ""),
                                   (f"{prefix}-{args.quant}", worse.name, against)):  # fmt: skip
                body += MODEL.format(id=id_, runtime=runtime, file=file, threads=args.threads, n_ctx=args.n_ctx,
                                     chunks=args.chunks, ref=ref)  # fmt: skip
        body += "protocol: {warmup: 0, repetitions: 1, min_duration_s: 0}\ntelemetry: {interval_ms: 0, idle_s: 0}\n"
        (work / "recipe.yaml").write_text(body)
        (work / "local-tools.yaml").write_text(PROFILE.format(bin=bin_dir))
        done = paired.melt(
            "run", "recipe.yaml", "-d", "local-tools.yaml", "--results", "results", "--run-id", "q", cwd=work
        )
        print(f"melt run: exit {done.returncode}")
        if done.returncode != 0:
            print(done.stdout[-3000:] + done.stderr[-3000:])
            return 1
        got = {}
        for case_dir in (work / "results" / "q" / "cases").iterdir():
            case = json.loads((case_dir / "case.json").read_text())
            metrics = json.loads((case_dir / "metrics.json").read_text())
            got[case["model"]] = (metrics["summary"], metrics["quality"])
        ok = True
        for name in ("original", args.quant):
            agent, tools = got[f"agent-{name}"][0]["ppl"], got[f"tools-{name}"][0]["ppl"]
            ratio = agent / tools
            ok &= abs(ratio - 1) <= TOLERANCE
            print(f"ppl {name:<10} melt agent {agent:.4f}  llama-perplexity {tools:.4f}  ratio {ratio:.6f}  "
                  f"({'within' if abs(ratio - 1) <= TOLERANCE else 'NOT within'} {TOLERANCE:.1%})")  # fmt: skip
        a_kld = got[f"agent-{args.quant}"][1]["kld"]
        t_sum, t_kld = got[f"tools-{args.quant}"][0], got[f"tools-{args.quant}"][1]["kld"]
        low, high, full = a_kld["kld_mean"], a_kld["kld_upper_mean"], t_sum["kld_mean"]
        # the tool prints 6 decimals, and stores the base in 16 bits: half a unit of the last printed digit
        inside = low - 5e-7 <= full <= high + 5e-7
        ok &= inside
        print(f"KL({args.quant} || original), nats per token: melt agent bounds [{low:.6f}, {high:.6f}] "
              f"(top {a_kld['top_k']}); llama-perplexity full vocabulary {full:.6f} +- {t_kld['kld_mean_stderr']:.6f} "
              f"({'inside' if inside else 'OUTSIDE'} the bounds)")  # fmt: skip
        print(f"top-1 agreement: melt agent {a_kld['top1_agree_pct']:.2f}%  llama-perplexity "
              f"{t_sum['top1_agree_pct']:.2f}%; ppl ratio: melt agent {a_kld['ppl_ratio']:.4f}  "
              f"llama_cpp_cli {t_sum['ppl_ratio']:.4f} (the tool's own, from its 16-bit base: "
              f"{t_kld['ppl_ratio_tool']})")  # fmt: skip
        print(f"agreement: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
