"""Quality fidelity: melt's perplexity against llama.cpp's own llama-perplexity, same model, text, context and
threads (budget, DESIGN.md: within 0.5%).

melt's side is its llama_cpp runtime loaded in this process and melt.runtimes.llama_quality.perplexity, the code
the agent runs for a recipe's quality.perplexity; llama-perplexity is the one benchmarks/build_llama_bench.sh
builds from the llama.cpp sources llama-cpp-python vendors, run with -c N_CTX -b N_CTX (one window per batch, as
melt decodes them) and --chunks. Perplexity is deterministic for a given build and thread count, so one run of
each side is the comparison; the printed output is kept in benchmarks/outputs/ (benchmarks/record.py).

Usage: .venv/bin/python benchmarks/quality_fidelity.py [--model M.gguf] [--text T.txt] [--n-ctx 512]
       [--chunks 16] [--threads 2] [--bin ~/.cache/melt/llama-bench/llama-perplexity]
Exit 0 within budget, 1 outside it, 2 on bad input.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import paired  # noqa: E402
from record import add_out_arg, kept_output  # noqa: E402

BUDGET = 0.005  # relative
FINAL = re.compile(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)")


def llama_perplexity(binary: str, model: str, text: str, n_ctx: int, chunks: int, threads: int) -> dict:
    """llama-perplexity's final estimate: {"ppl", "ppl_stderr", "seconds", "command", "attempts"}. llama.cpp's log
    thread can lose its last lines at exit on a busy machine (common/log.cpp, llama.cpp issue 22142): a run that
    printed no estimate is run again, three times at most. Raises RuntimeError with its last lines when it
    fails, or when every attempt lost the estimate."""
    cmd = [binary, "-m", model, "-f", text, "-c", str(n_ctx), "-b", str(n_ctx), "--chunks", str(chunks),
           "-t", str(threads)]  # fmt: skip
    for attempt in range(1, 4):
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        said = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"llama-perplexity exited {proc.returncode}: {said[-1500:]}")
        m = FINAL.search(said)
        if m:
            return {"ppl": float(m[1]), "ppl_stderr": float(m[2]), "seconds": time.monotonic() - t0,
                    "command": cmd, "attempts": attempt}  # fmt: skip
    raise RuntimeError(f"llama-perplexity printed no estimate in 3 runs: {said[-1500:]}")


def melt_perplexity(model: str, text: str, n_ctx: int, chunks: int, threads: int) -> dict:
    from melt.runtimes.llama_cpp import Runner
    from melt.runtimes.llama_quality import perplexity

    with tempfile.TemporaryDirectory(prefix="melt-quality-") as work:
        runner = Runner({"model_path": model, "workload": {"prompt_tokens": 8, "n_gen": 2},
                         "params": {"threads": threads}}, work)  # fmt: skip
        runner.load()
        try:
            return perplexity(runner, Path(text).read_text(encoding="utf-8"), n_ctx, chunks)
        finally:
            runner.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF file (default: the quickstart's Gemma 3 270M Q4_K_M)")
    ap.add_argument("--text", help="UTF-8 text (default: melt's shipped public-domain text)")
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bin", default=str(Path.home() / ".cache" / "melt" / "llama-bench" / "llama-perplexity"))
    add_out_arg(ap)
    args = ap.parse_args(argv)
    try:
        model = paired.model_or_default(args.model)
    except ValueError as e:
        return paired.bad_input(str(e))
    if args.text is None:
        from melt.run import shipped_text

        args.text = str(shipped_text())
    for name, path in (("--model", model), ("--text", args.text), ("--bin", args.bin)):
        if not Path(path).is_file():
            return paired.bad_input(f"{name} {path}: no such file")
    with kept_output("quality_fidelity", args.out, argv):
        print(paired.machine_line(paired.machine_info()))
        print(
            f"model {model}\ntext {args.text}; n_ctx {args.n_ctx}, up to {args.chunks} chunks, {args.threads} threads"
        )
        melt = melt_perplexity(model, args.text, args.n_ctx, args.chunks, args.threads)
        print(f"melt: PPL = {melt['ppl']:.4f} +/- {melt['ppl_stderr']:.5f} ({melt['n_chunks']} chunks, "
              f"{melt['tokens_scored']} tokens scored, {melt['seconds']:.1f} s)")  # fmt: skip
        ref = llama_perplexity(args.bin, model, args.text, args.n_ctx, min(args.chunks, melt["n_chunks"]), args.threads)
        print(f"llama-perplexity: PPL = {ref['ppl']:.4f} +/- {ref['ppl_stderr']:.5f} ({ref['seconds']:.1f} s): "
              f"{' '.join(ref['command'])}")  # fmt: skip
        diff = melt["ppl"] / ref["ppl"] - 1
        ok = abs(diff) <= BUDGET
        print(f"melt / llama-perplexity = {1 + diff:.6f} ({100 * diff:+.4f}%; budget +-{100 * BUDGET:g}%): "
              f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
