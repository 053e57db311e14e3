"""Fidelity: melt's prefill and decode rates against llama.cpp's own llama-bench, in drift-proof pairs.

Same GGUF, same llama.cpp (benchmarks/build_llama_bench.sh builds llama-bench from the llama.cpp sources
llama-cpp-python vendors, with the same CMake options), same threads, n_batch and n_ubatch, flash attention
asked for the same way on both sides and printed as each side resolved it. Like with like:

  prefill: melt prefill_tok_s of a P-token prompt        vs  llama-bench ppP (-p P -n 0)
  decode:  melt decode_tok_s after a P-token prompt       vs  llama-bench tgN at depth P (-p 0 -n N -d P)
           melt generates N + 1 tokens: its first comes from the prefill's logits and its decode rate counts
           the N single-token decodes after it, at KV positions P..P+N-1, the positions llama-bench's tgN @ dP
           decodes at.

One pair = one melt trial and one llama-bench repetition of each test (-r 1), back to back, melt's trial
between the two: pp, melt, tg in even pairs and tg, melt, pp in odd ones, so each of melt's figures sits
next to its llama-bench counterpart and each side comes first for half the pairs of each ratio: drift slower
than a pair cancels in the ratio. Each side is warm when measured: llama-bench runs its own warm-up right
before its measured repetition, in the same process, and melt runs an unmeasured trial right before its
measured one (melt run's trials follow each other the same way). Without that, melt's trial right after a
llama-bench process read as 11-16% slower in prefill than one right after its own (0.84 against 0.95, and
0.93 against 1.04-1.08 in two earlier grids, 20-41 pairs each way), most likely because llama-bench's run had
left the cache full of its own copy of the weights (each process repacks its own). melt's side is
its llama_cpp runtime loaded once in this process and kept warm (melt.runtimes.llama_cpp.Runner.trial, the
code melt's agent runs per trial; figures from melt.analysis.metrics.llama_trial, as `melt run` computes
them; sampling off: benchmarks/observer_cost.py measures the sampler). llama-bench loads the model per
invocation outside its timing and runs its own warm-up before the repetition; melt's load is outside its
trials and its first trial (a warm-up) is not counted. Neither side's figure includes a model load.

Per pair: ratio = melt / llama-bench. The 95% interval of each ratio, pairs added until both are within
+-3% (benchmarks/paired.py says how), then, "within 3%" being two-sided: exit 0 when both intervals lie
within 0.97..1.03, 1 when a whole interval lies below 0.97 or above 1.03, 3 when the machine was busy during
the pairs (other processes' CPU, steal) or an interval lies across 0.97 or 1.03 (the reason is printed), 2 on
bad input. A grid (--prompt 128 512 --threads 1 2) runs every combination: 1 if any failed, else 3 if any
did not conclude, else 0. The printed output is kept in benchmarks/outputs/ (benchmarks/record.py; --out).

Usage: .venv/bin/python benchmarks/fidelity.py [--prompt 128 512] [--threads 1 2] [-n 64] [--flash-attn off]
       [--bin ~/.cache/melt/llama-bench/llama-bench] [--model M.gguf] [--json out.json] [--half-width 0.03] ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import paired  # noqa: E402
from llama_bench import LlamaBenchError, run_llama_bench  # noqa: E402
from record import add_out_arg, kept_output  # noqa: E402

from melt.runtimes.llama_cpp_cli_output import (  # noqa: E402
    FlashAttnUnsupported,
    flash_attn_args,
    flash_attn_form,
    reported_flash_attn,
)

BUDGET, UPPER = 0.97, 1.03  # within 3%, two-sided: melt as much faster than llama-bench is as wrong
RATIOS = ["prefill", "decode"]


def default_bin() -> Path:
    """$LLAMA_BENCH_DIR/llama-bench, else benchmarks/.build/llama-bench, else ~/.cache/melt/llama-bench/llama-bench
    (where the tests and README build it)."""
    if os.environ.get("LLAMA_BENCH_DIR"):
        return Path(os.environ["LLAMA_BENCH_DIR"]) / "llama-bench"
    local = HERE / ".build" / "llama-bench"
    return local if local.exists() else Path.home() / ".cache" / "melt" / "llama-bench" / "llama-bench"


class Bench:
    """llama-bench with the -fa / -b / -ub / -t arguments fixed, one repetition per call."""

    def __init__(self, binary: str, model: str, threads: int, fa_args: list[str], n_batch: int, n_ubatch: int):
        self.binary, self.model, self.threads = binary, model, threads
        self.extra = [*fa_args, "-b", str(n_batch), "-ub", str(n_ubatch)]

    def pp(self, n_prompt: int) -> dict:
        return run_llama_bench(self.binary, self.model, self.threads, n_prompt, 0, 1, extra_args=self.extra)

    def tg(self, n_gen: int, depth: int) -> dict:
        return run_llama_bench(
            self.binary, self.model, self.threads, 0, n_gen, 1, extra_args=[*self.extra, "-d", str(depth)]
        )


def check_bench_record(result: dict, want_fa: str, n_batch: int, n_ubatch: int, threads: int) -> str:
    """What llama-bench says it ran with; raises LlamaBenchError when it is not what was asked (a build that
    reads -fa differently, a clamped batch)."""
    rec = result["raw"][0]
    fa = reported_flash_attn(rec)
    got = {
        "flash_attn": fa,
        "n_batch": rec.get("n_batch"),
        "n_ubatch": rec.get("n_ubatch"),
        "n_threads": rec.get("n_threads"),
    }
    want = {"flash_attn": want_fa, "n_batch": n_batch, "n_ubatch": n_ubatch, "n_threads": threads}
    wrong = {k: (got[k], want[k]) for k in want if got[k] is not None and got[k] != want[k]}
    if wrong:
        raise LlamaBenchError(f"llama-bench ran with something else than asked ({{key: (ran, asked)}}): {wrong}")
    return fa or "not reported by this build"


def run_combination(args, model: str, fa_form: dict, n_prompt: int, threads: int, work: str, say) -> dict:
    on = args.flash_attn == "on"
    fa_args = flash_attn_args(fa_form, on)
    params = {
        "threads": threads,
        "n_ctx": n_prompt + args.n_gen + 1,
        "n_batch": args.n_batch,
        "n_ubatch": args.n_ubatch,
        "flash_attn": on,
    }
    say(
        f"== prompt {n_prompt}, threads {threads}: prefill pp{n_prompt}, decode tg{args.n_gen} @ d{n_prompt}, "
        f"flash attention {args.flash_attn} =="
    )
    melt = paired.MeltLlama(model, n_prompt, args.n_gen + 1, params, work)
    try:
        eff = melt.effective
        bench = Bench(args.bin, model, threads, fa_args, eff["n_batch"], eff["n_ubatch"])
        melt_fa = melt.context_flash_attn()
        if melt_fa != args.flash_attn:  # like with like: both sides must run what was asked
            raise RuntimeError(f"melt's context ran flash attention {melt_fa!r} where {args.flash_attn!r} was asked")
        say(
            f"melt: llama_cpp runtime in this process; flash_attn asked {eff.get('asked', {}).get('flash_attn')!r} "
            f"-> llama.cpp resolved flash attention '{melt_fa}'; threads {eff['threads']}/{eff['threads_batch']}, "
            f"n_ctx {eff['n_ctx']}, n_batch {eff['n_batch']}, n_ubatch {eff['n_ubatch']}"
        )
        melt.figures(0)  # warm-up trial, as melt's protocol runs one before counting
        first = bench.pp(n_prompt)  # warm-up for the page cache; also tells what llama-bench resolved
        ran_fa = check_bench_record(first, args.flash_attn, eff["n_batch"], eff["n_ubatch"], threads)
        say(
            f"llama-bench: {' '.join(fa_args) or '(no -fa)'} -> its records say flash attention {ran_fa}; "
            f"-t {threads} -b {eff['n_batch']} -ub {eff['n_ubatch']}; -r 1 per pair (its own warm-up run on); "
            f"build {first['build_commit']}"
        )
        trial = itertools.count(1)  # trial 0 was the warm-up

        def do_pair(index: int) -> dict:
            pp_first = index % 2 == 0  # melt's trial between the two, each figure next to its counterpart
            runs = {
                "pp": lambda: bench.pp(n_prompt),
                "melt_warmup": lambda: melt.figures(next(trial)),
                "melt": lambda: melt.figures(next(trial)),
                "tg": lambda: bench.tg(args.n_gen, n_prompt),
            }
            got, spans = {}, {}
            for part in ("pp", "melt_warmup", "melt", "tg") if pp_first else ("tg", "melt_warmup", "melt", "pp"):
                start = time.monotonic()
                got[part] = runs[part]()
                spans[part] = [round(start, 4), round(time.monotonic(), 4)]
            pp, m, tg = got["pp"], got["melt"], got["tg"]
            check_bench_record(tg, args.flash_attn, eff["n_batch"], eff["n_ubatch"], threads)
            figures = {
                "melt_prefill_tok_s": m["prefill_tok_s"],
                "melt_decode_tok_s": m["decode_tok_s"],
                "bench_pp_tok_s": pp["prefill_tok_s"],
                "bench_tg_tok_s": tg["decode_tok_s"],
                "order": "pp, melt, tg" if pp_first else "tg, melt, pp",
                "spans_s": spans,  # monotonic start and end of each part
            }
            ratios = {
                "prefill": figures["melt_prefill_tok_s"] / figures["bench_pp_tok_s"],
                "decode": figures["melt_decode_tok_s"] / figures["bench_tg_tok_s"],
            }
            line = (
                f"{figures['order']}: prefill {figures['melt_prefill_tok_s']:.1f}"
                f"/{figures['bench_pp_tok_s']:.1f} = {ratios['prefill']:.3f}, decode "
                f"{figures['melt_decode_tok_s']:.2f}/{figures['bench_tg_tok_s']:.2f} = {ratios['decode']:.3f}"
            )
            return {"ratios": ratios, "figures": figures, "line": line}

        series = paired.run_series(do_pair, RATIOS, RATIOS, paired.rule_from_args(args, BUDGET, UPPER), say)
    finally:
        melt.close()
    paired.print_conclusion(series, RATIOS, BUDGET, say, UPPER)
    return {
        "prompt": n_prompt,
        "threads": threads,
        "n_gen": args.n_gen,
        "flash_attn": {"asked": args.flash_attn, "melt_context": melt_fa, "llama_bench": ran_fa},
        "melt_effective_params": eff,
        "llama_bench_args": bench.extra,
        **series.to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(default_bin()), help="llama-bench (benchmarks/build_llama_bench.sh)")
    ap.add_argument("--model", help="GGUF file (default: the quickstart's Gemma 3 270M Q4_K_M)")
    ap.add_argument("-p", "--prompt", type=int, nargs="+", default=[256], help="prompt tokens P (several: a grid)")
    ap.add_argument("-t", "--threads", type=int, nargs="+", default=[2], help="threads (several: a grid)")
    ap.add_argument("-n", "--n-gen", type=int, default=64, help="decoded tokens N per llama-bench tg test")
    ap.add_argument("--flash-attn", choices=["off", "on"], default="off", help="asked of both sides explicitly")
    ap.add_argument("--n-batch", type=int, default=512, help="asked of melt; llama-bench gets what melt resolved")
    ap.add_argument("--n-ubatch", type=int, default=512)
    paired.add_rule_args(ap, half_width=0.03)
    add_out_arg(ap)
    args = ap.parse_args(argv)
    if min(args.prompt + args.threads + [args.n_gen, args.n_batch, args.n_ubatch]) < 1:
        return paired.bad_input("--prompt, --threads, -n, --n-batch and --n-ubatch must be >= 1")
    try:
        model = paired.checked_inputs(args, BUDGET)
    except ValueError as e:
        return paired.bad_input(str(e))
    if not os.access(args.bin, os.X_OK):
        return paired.bad_input(
            f"--bin {args.bin}: no executable llama-bench there (build: benchmarks/build_llama_bench.sh)"
        )
    help_text = subprocess.run([args.bin, "--help"], capture_output=True, text=True, timeout=60, check=False)
    try:
        fa_form = flash_attn_form(help_text.stdout + help_text.stderr)
        flash_attn_args(fa_form, args.flash_attn == "on")
    except FlashAttnUnsupported as e:
        return paired.bad_input(f"--bin {args.bin}: {e}")

    with kept_output("fidelity", args.out, argv):
        return _run(args, model, fa_form)


def _run(args, model: str, fa_form: dict) -> int:
    def say(text: str) -> None:
        print(text, flush=True)

    say(paired.machine_line(paired.machine_info()))
    from melt.runtimes.llama_cpp import info

    say(f"model {model}")
    say(f"melt: llama-cpp-python {info()['llama_cpp_python']}; llama-bench {args.bin} (-fa form '{fa_form['form']}')")
    results, t0 = [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="melt-fidelity-") as work:
        for n_prompt in args.prompt:
            for threads in args.threads:
                try:
                    results.append(run_combination(args, model, fa_form, n_prompt, threads, work, say))
                except (LlamaBenchError, RuntimeError) as e:  # a side that cannot run as asked: nothing concluded
                    return paired.bad_input(str(e))
    code = paired.overall_exit([r["exit_code"] for r in results])
    paired.say_grid_summary(results, RATIOS, 3, code, time.monotonic() - t0, say)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": paired.machine_info(),
                    "model": model,
                    "bin": args.bin,
                    "combinations": results,
                    "exit_code": code,
                },
                indent=2,
            )
        )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
