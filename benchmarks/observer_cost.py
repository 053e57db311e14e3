"""Observer cost: melt's decode_tok_s with sampling off, at 10 Hz and at 100 Hz, in drift-proof pairs.

melt's sampler is a separate process reading procfs and whatever sensors the machine has; on a 2-core
machine it competes with the measured process for CPU. One "pair" here is one trial under each setting
(off, 10 Hz, 100 Hz) back to back, the order rotating through all six permutations so each setting runs
first, second and last equally often; drift slower than a pair cancels in the ratios "10 Hz / off" and
"100 Hz / off". melt's side is its llama_cpp runtime loaded once in this process (the code melt's agent runs
per trial; decode_tok_s from melt.analysis.metrics.llama_trial); for a sampled trial the agent's own
SamplerProcess (melt.agent.telemetry) is started on this process, as `melt run` starts it on the agent, and
stopped after the trial; the trial starts once the sampler has written its first row (its start-up is
outside the trial, as melt run's idle window keeps it out).

Budget: 10 Hz costs under 1%: the lower end of the 95% interval of "10 Hz / off" >= 0.99. Pairs are added
until that interval is within +-0.5% (so a cost near zero can be told from 1%); "100 Hz / off" is printed,
not judged. Exit 0 pass, 1 the whole interval below 0.99, 3 busy machine or an interval across 0.99 (the
reason is printed), 2 bad input; a grid: 1 if any failed, else 3 if any did not conclude, else 0.

Usage: .venv/bin/python benchmarks/observer_cost.py [--prompt 128 512] [--threads 1 2] [-n 128] [--model M.gguf]
       [--json out.json] [--half-width 0.005] ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import paired  # noqa: E402
from record import add_out_arg, kept_output  # noqa: E402

from melt.agent.telemetry import SamplerProcess  # noqa: E402

SETTINGS = {"off": 0, "10 Hz": 100, "100 Hz": 10}  # sampling interval in ms; 0 = no sampler
ORDERS = list(itertools.permutations(SETTINGS))
BUDGET = 0.99
RATIOS = ["10 Hz / off", "100 Hz / off"]
JUDGED = ["10 Hz / off"]
SETTLE_S = 0.1  # after the sampler's first row (and as long with sampling off): its start-up is over


def run_combination(args, model: str, n_prompt: int, threads: int, work: str, say) -> dict:
    params = {"threads": threads, "n_ctx": n_prompt + args.n_gen}
    say(f"== prompt {n_prompt}, threads {threads}, decode {args.n_gen} tokens: sampling off / 10 Hz / 100 Hz ==")
    melt = paired.MeltLlama(model, n_prompt, args.n_gen, params, work)
    try:
        eff = melt.effective
        say(
            f"melt: llama_cpp runtime in this process; threads {eff['threads']}, n_ctx {eff['n_ctx']}, "
            f"flash_attn {eff['flash_attn']!r} (context: '{melt.context_flash_attn()}'); sampler: melt's agent "
            f"sampler process (melt.agent.telemetry.SamplerProcess) sampling pid {os.getpid()}"
        )
        melt.figures(0)  # warm-up trial
        trial = itertools.count(1)  # trial 0 was the warm-up

        def one(setting: str) -> tuple[float, int | None]:
            """decode_tok_s of one trial under the setting, and how many rows the sampler wrote (None: off)."""
            interval_ms = SETTINGS[setting]
            sampler = trace = None
            if interval_ms:
                case_dir = tempfile.mkdtemp(dir=work)  # a fresh trace.csv: readiness is its first row
                trace = Path(case_dir) / "trace.csv"
                sampler = SamplerProcess(case_dir, interval_ms, "/", {}, os.getpid())
            try:
                time.sleep(SETTLE_S)
                rate = melt.figures(next(trial))["decode_tok_s"]
            finally:
                if sampler is not None:
                    sampler.stop()  # waited for: its CPU counts as this benchmark's own, not foreign
            rows = len(trace.read_text().splitlines()) - 1 if trace is not None else None
            return rate, rows

        def do_pair(index: int) -> dict:
            order = ORDERS[index % len(ORDERS)]
            measured = {s: one(s) for s in order}
            rates = {s: measured[s][0] for s in SETTINGS}
            ratios = {"10 Hz / off": rates["10 Hz"] / rates["off"], "100 Hz / off": rates["100 Hz"] / rates["off"]}
            line = (
                f"{' -> '.join(order)}: decode "
                + ", ".join(f"{s} {rates[s]:.2f}" for s in SETTINGS)
                + " tok/s; "
                + ", ".join(f"{k} {v:.4f}" for k, v in ratios.items())
            )
            return {
                "ratios": ratios,
                "figures": {
                    "decode_tok_s": rates,
                    "sampler_rows": {s: measured[s][1] for s in SETTINGS},
                    "order": list(order),
                },
                "line": line,
            }

        series = paired.run_series(do_pair, RATIOS, JUDGED, paired.rule_from_args(args, BUDGET), say)
    finally:
        melt.close()
    paired.print_conclusion(series, JUDGED, BUDGET, say)
    return {
        "prompt": n_prompt,
        "threads": threads,
        "n_gen": args.n_gen,
        "melt_effective_params": eff,
        **series.to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF file (default: the quickstart's Gemma 3 270M Q4_K_M)")
    ap.add_argument("-p", "--prompt", type=int, nargs="+", default=[128], help="prompt tokens (several: a grid)")
    ap.add_argument("-t", "--threads", type=int, nargs="+", default=[2], help="threads (several: a grid)")
    ap.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens per trial")
    paired.add_rule_args(ap, half_width=0.005, max_pairs=120)
    add_out_arg(ap)
    args = ap.parse_args(argv)
    if min([*args.prompt, *args.threads, args.n_gen]) < 1 or args.n_gen < 2:
        return paired.bad_input("--prompt and --threads must be >= 1 and -n >= 2 (a decode rate needs two tokens)")
    try:
        model = paired.checked_inputs(args, BUDGET)
    except ValueError as e:
        return paired.bad_input(str(e))

    with kept_output("observer_cost", args.out, argv):
        return _run(args, model)


def _run(args, model: str) -> int:
    def say(text: str) -> None:
        print(text, flush=True)

    say(paired.machine_line(paired.machine_info()))
    say(f"model {model}")
    results, t0 = [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="melt-observer-") as work:
        for n_prompt in args.prompt:
            for threads in args.threads:
                try:
                    results.append(run_combination(args, model, n_prompt, threads, work, say))
                except RuntimeError as e:  # the model does not load, the sampler does not start
                    return paired.bad_input(str(e))
    code = paired.overall_exit([r["exit_code"] for r in results])
    paired.say_grid_summary(results, RATIOS, 4, code, time.monotonic() - t0, say)
    if args.json:
        out = {"machine": paired.machine_info(), "model": model, "combinations": results, "exit_code": code}
        Path(args.json).write_text(json.dumps(out, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
