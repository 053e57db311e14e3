"""Run llama.cpp's ``llama-bench`` and parse its JSON output (stdlib only).

The binary is built by ``benchmarks/build_llama_bench.sh`` from the llama.cpp revision that the
installed llama-cpp-python vendors, so its numbers are the reference for melt's own prefill/decode
measurements.

Usage::

    python benchmarks/llama_bench.py --bin benchmarks/.build/llama-bench --model m.gguf -t 2 -p 256 -n 64
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
from typing import Any


class LlamaBenchError(RuntimeError):
    """llama-bench failed or printed something that is not the expected JSON."""


def _parse_json_output(stdout: str) -> list[dict[str, Any]]:
    # `-o json` prints one JSON array on stdout; logs go to stderr. Be tolerant of stray text
    # before the array anyway.
    start = stdout.find("[")
    if start < 0:
        raise LlamaBenchError(f"no JSON array in llama-bench output: {stdout[:500]!r}")
    try:
        data, _ = json.JSONDecoder().raw_decode(stdout, start)
    except json.JSONDecodeError as exc:
        raise LlamaBenchError(f"cannot parse llama-bench JSON output: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise LlamaBenchError("llama-bench JSON output is not a list of objects")
    return data


def _find_test(records: list[dict[str, Any]], *, prompt: bool) -> dict[str, Any] | None:
    for rec in records:
        n_prompt, n_gen = int(rec.get("n_prompt", 0)), int(rec.get("n_gen", 0))
        if prompt and n_prompt > 0 and n_gen == 0:
            return rec
        if not prompt and n_gen > 0 and n_prompt == 0:
            return rec
    return None


def parse_llama_bench(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Turn llama-bench's JSON records into melt's summary dict.

    ``prefill_*`` comes from the ppN test (n_gen == 0), ``decode_*`` from the tgN test
    (n_prompt == 0). A test that was not run gives ``None`` / ``[]``.
    """
    if not records:
        raise LlamaBenchError("llama-bench produced no results")
    pp = _find_test(records, prompt=True)
    tg = _find_test(records, prompt=False)
    first = records[0]
    return {
        "prefill_tok_s": float(pp["avg_ts"]) if pp else None,
        "decode_tok_s": float(tg["avg_ts"]) if tg else None,
        "prefill_samples_tok_s": [float(x) for x in pp.get("samples_ts", [])] if pp else [],
        "decode_samples_tok_s": [float(x) for x in tg.get("samples_ts", [])] if tg else [],
        "build_commit": str(first.get("build_commit", "unknown")),
        "build_number": int(first.get("build_number", 0)),
        "raw": records,
    }


def run_llama_bench(
    binary: str,
    model: str,
    threads: int,
    n_prompt: int,
    n_gen: int,
    repetitions: int = 5,
    *,
    extra_args: list[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one llama-bench invocation (ppN and tgN tests together) and return the parsed summary.

    Keys: prefill_tok_s, decode_tok_s (means over repetitions, tokens/s), prefill_samples_tok_s,
    decode_samples_tok_s (per repetition), build_commit, build_number (llama.cpp build info as
    llama-bench reports it; build_number is the commit count of the checkout it was built from,
    which is 1 for the shallow clone shipped in llama-cpp-python's sdist), raw (llama-bench's
    JSON records). Pass n_prompt=0 or n_gen=0 to skip that test; its fields are then None / [].
    """
    if n_prompt <= 0 and n_gen <= 0:
        raise ValueError("at least one of n_prompt and n_gen must be > 0")
    if threads <= 0 or repetitions <= 0:
        raise ValueError("threads and repetitions must be > 0")
    cmd = [
        binary,
        "-m",
        model,
        "-t",
        str(threads),
        "-p",
        str(max(n_prompt, 0)),
        "-n",
        str(max(n_gen, 0)),
        "-r",
        str(repetitions),
        "-o",
        "json",
        *(extra_args or []),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise LlamaBenchError(f"llama-bench binary not found: {binary}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LlamaBenchError(f"llama-bench timed out after {timeout} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        if proc.returncode < 0:
            try:
                why = f"killed by {signal.Signals(-proc.returncode).name}"
            except ValueError:
                why = f"killed by signal {-proc.returncode}"
        else:
            why = f"exit code {proc.returncode}"
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise LlamaBenchError(f"llama-bench failed ({why}): {' '.join(cmd)}\n{tail}")
    result = parse_llama_bench(_parse_json_output(proc.stdout))
    if n_prompt > 0 and result["prefill_tok_s"] is None:
        raise LlamaBenchError(f"llama-bench output has no pp{n_prompt} result")
    if n_gen > 0 and result["decode_tok_s"] is None:
        raise LlamaBenchError(f"llama-bench output has no tg{n_gen} result")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run llama-bench and print a JSON summary.")
    ap.add_argument("--bin", default="benchmarks/.build/llama-bench", help="path to llama-bench")
    ap.add_argument("--model", required=True, help="GGUF model path")
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=256, help="prompt tokens (0 = skip)")
    ap.add_argument("-n", "--n-gen", type=int, default=64, help="generated tokens (0 = skip)")
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("--no-raw", action="store_true", help="omit the raw llama-bench records")
    args = ap.parse_args(argv)
    result = run_llama_bench(args.bin, args.model, args.threads, args.n_prompt, args.n_gen, args.repetitions)
    if args.no_raw:
        result.pop("raw")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
