"""Parse what llama.cpp's own programs print, on the host (an Android phone has no Python).

Two sources:

- the end-of-run timing block of `llama-cli` / `llama-completion` (`parse_timings`). Three spellings are
  known: `llama_print_timings:` (before September 2024), `llama_perf_sampler_print:` +
  `llama_perf_context_print:` (from then on) and `common_perf_print:` (current builds; it splits sampling
  into "sampling time" and "samplers time" and adds "unaccounted time"). Any log prefix (level letter,
  timestamp, `[pid]`, ANSI colour) before the function name is ignored;
- `llama-bench -o jsonl` or `-o json` (`parse_llama_bench`), whose per-repetition samples are melt's trials
  (`llama_bench_trials`).

Standard library only.
"""

from __future__ import annotations

import json
import math
import re

__all__ = [
    "TimingsNotFound",
    "LlamaBenchOutputError",
    "parse_timings",
    "parse_llama_bench",
    "llama_bench_trials",
    "llama_bench_command",
]


class TimingsNotFound(ValueError):
    """The text has no llama.cpp timing line at all."""


class LlamaBenchOutputError(ValueError):
    """No llama-bench record could be read from the text."""


# ---------------------------------------------------------------------------------------------------------------
# llama-cli / llama-completion timing lines

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Any line holding one of these looks like a timing line: it is either read or listed in `unparsed`.
_TIMING_HINT = re.compile(r"llama_perf|llama_print_timings|common_perf_print")
_FUNC = re.compile(
    r"(?P<func>llama_perf_(?:context|sampler)_print|llama_print_timings|common_perf_print):(?P<body>.*)$"
)
_NUM = r"[0-9]+(?:\.[0-9]+)?"
# "prompt eval time =    4245.68 ms /     8 tokens (  530.71 ms per token,     1.88 tokens per second)"
_TIME = re.compile(
    rf"(?P<label>load|prompt eval|eval|total|sampling|sample|samplers) time\s*=\s*(?P<ms>{_NUM})\s*ms"
    rf"(?:\s*/\s*(?P<n>[0-9]+)\s*(?:tokens?|runs?))?"
    r"(?:\s*\([^()]*\))?"
)
# "unaccounted time =     12.34 ms /   0.1 %      (total - sampling - prompt eval - eval) / (total)"
_UNACCOUNTED = re.compile(rf"unaccounted time\s*=\s*(?P<ms>-?{_NUM})\s*ms\s*/\s*-?(?:{_NUM}|nan|inf)\s*%.*")
_GRAPHS = re.compile(r"graphs reused\s*=\s*(?P<n>[0-9]+)")

# label -> (seconds key, count key, whether the count must be there)
_FIELDS = {
    "load": ("load_s", None, False),
    "prompt eval": ("prompt_eval_s", "n_prompt_tokens", True),
    "eval": ("eval_s", "n_eval_runs", True),
    "total": ("total_s", "n_total_tokens", False),
    "sample": ("sample_s", "n_sample_runs", True),
    "samplers": ("sample_s", "n_sample_runs", True),
}
# A block is complete when it has the whole context part.
_COMPLETE = ("load_s", "prompt_eval_s", "eval_s", "total_s")
_FORMATS = {
    "llama_print_timings": "llama_print_timings",
    "llama_perf_context_print": "llama_perf",
    "llama_perf_sampler_print": "llama_perf",
    "common_perf_print": "common_perf_print",
}


def _read_timing_body(body: str) -> dict | None:
    """One timing line's text after `func:`, as {key: value}; None when it is not exactly a known line."""
    body = body.strip()
    m = _TIME.fullmatch(body)
    if m:
        label, ms, n = m["label"], float(m["ms"]), m["n"]
        if label == "sampling":
            # llama_perf_sampler_print: "sampling time = X ms / N runs" (the sampler chain, like the old
            # "sample time"); common_perf_print: "sampling time = X ms" (chain + common/sampling overhead).
            if n is None:
                return {"sampling_total_s": ms / 1e3}
            label = "sample"
        seconds_key, count_key, count_needed = _FIELDS[label]
        if n is None and count_needed:
            return None  # cut short after "ms": never guess the count
        if n is not None and count_key is None:
            return None
        out = {seconds_key: ms / 1e3}
        if n is not None:
            out[count_key] = int(n)
        return out
    m = _UNACCOUNTED.fullmatch(body)
    if m:
        return {"unaccounted_s": float(m["ms"]) / 1e3}
    m = _GRAPHS.fullmatch(body)
    if m:
        return {"n_graphs_reused": int(m["n"])}
    return None


def parse_timings(text: str) -> dict:
    """llama.cpp's end-of-run timing block, in seconds and tokens per second.

    Keys (each only when its line was read): load_s, prompt_eval_s, n_prompt_tokens, prefill_tok_s
    (n_prompt_tokens / prompt_eval_s), eval_s, n_eval_runs, decode_tok_s (n_eval_runs / eval_s), sample_s,
    n_sample_runs, total_s, n_total_tokens; from current builds (common_perf_print) also sampling_total_s,
    unaccounted_s and n_graphs_reused. Always: format ("llama_perf", "llama_print_timings" or
    "common_perf_print", of the block taken) and unparsed (every timing-looking line, whole text, that could
    not be read exactly; nothing in it is guessed at).

    A block ends where a field repeats. When the text holds several blocks, the last complete one (load,
    prompt eval, eval and total all read) is taken, else the last one. Raises TimingsNotFound when no line
    looks like a timing line.
    """
    blocks: list[dict] = []
    current: dict = {}
    unparsed: list[str] = []
    seen_any = False
    for raw_line in text.splitlines():
        line = _ANSI.sub("", raw_line)
        if not _TIMING_HINT.search(line):
            continue
        seen_any = True
        m = _FUNC.search(line)
        fields = _read_timing_body(m["body"]) if m else None
        if fields is None:
            unparsed.append(line.strip())
            continue
        fmt = _FORMATS[m["func"]]
        if current and (fmt != current["format"] or any(k in current for k in fields)):
            blocks.append(current)
            current = {}
        current.setdefault("format", fmt)
        current.update(fields)
    if current:
        blocks.append(current)
    if not seen_any:
        raise TimingsNotFound("no llama.cpp timing line (llama_perf_*, llama_print_timings, common_perf_print)")

    complete = [b for b in blocks if all(k in b for k in _COMPLETE)]
    chosen = dict(complete[-1] if complete else blocks[-1] if blocks else {})
    if chosen.get("prompt_eval_s") and "n_prompt_tokens" in chosen:
        chosen["prefill_tok_s"] = chosen["n_prompt_tokens"] / chosen["prompt_eval_s"]
    if chosen.get("eval_s") and "n_eval_runs" in chosen:
        chosen["decode_tok_s"] = chosen["n_eval_runs"] / chosen["eval_s"]
    chosen["unparsed"] = unparsed
    return chosen


# ---------------------------------------------------------------------------------------------------------------
# llama-bench

_DECODER = json.JSONDecoder()
_LINE_START = re.compile(r"^[ \t]*[\[{]", re.MULTILINE)


def _json_values(text: str) -> list:
    """Every JSON array or object that starts a line, skipping log lines and anything that does not decode."""
    values = []
    pos = 0
    while True:
        m = _LINE_START.search(text, pos)
        if not m:
            return values
        start = m.end() - 1
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            pos = m.end()  # not JSON (or cut short): look at the next line, which may hold a whole record
            continue
        values.append(value)
        pos = end


def _is_bench_record(value) -> bool:
    return (
        isinstance(value, dict)
        and "n_prompt" in value
        and "n_gen" in value
        and ("avg_ts" in value or "samples_ns" in value)
    )


def _test_kind(n_prompt: int, n_gen: int) -> str:
    if n_gen == 0:
        return "pp"
    if n_prompt == 0:
        return "tg"
    return "pg"


def _normalise_bench_record(rec: dict) -> dict:
    n_prompt = int(rec["n_prompt"])
    n_gen = int(rec["n_gen"])
    samples_ns = [int(x) for x in rec.get("samples_ns") or []]
    if rec.get("samples_ts") is not None:
        samples_tok_s = [float(x) for x in rec["samples_ts"]]
    else:
        # llama-bench's own definition (test::get_ts): depth tokens are not counted
        samples_tok_s = [1e9 * (n_prompt + n_gen) / ns if ns > 0 else math.nan for ns in samples_ns]
    if rec.get("avg_ts") is not None:
        avg = float(rec["avg_ts"])
    else:
        avg = sum(samples_tok_s) / len(samples_tok_s) if samples_tok_s else None
    if rec.get("stddev_ts") is not None:
        stddev = float(rec["stddev_ts"])
    elif len(samples_tok_s) > 1:  # sample standard deviation, as llama-bench's stdev()
        mean = sum(samples_tok_s) / len(samples_tok_s)
        stddev = math.sqrt(sum((x - mean) ** 2 for x in samples_tok_s) / (len(samples_tok_s) - 1))
    else:
        stddev = 0.0 if samples_tok_s else None
    out = {
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_depth": int(rec.get("n_depth") or 0),
        "n_threads": int(rec["n_threads"]) if rec.get("n_threads") is not None else None,
        "test": _test_kind(n_prompt, n_gen),
        "avg_tok_s": avg,
        "stddev_tok_s": stddev,
        "samples_ns": samples_ns,
        "samples_tok_s": samples_tok_s,
        "build_commit": rec.get("build_commit"),
        "build_number": rec.get("build_number"),
        "model_filename": rec.get("model_filename"),
        "model_type": rec.get("model_type"),
        "model_size_bytes": rec.get("model_size"),
        "cpu_info": rec.get("cpu_info"),
        "gpu_info": rec.get("gpu_info"),
    }
    if "backends" in rec:
        out["backends"] = rec["backends"]
    out["raw"] = rec
    return out


def parse_llama_bench(text: str) -> list[dict]:
    """Records from `llama-bench -o jsonl` (one object a line) or `-o json` (one array), log lines around them
    ignored. Each record: n_prompt, n_gen, n_depth (0 when absent), n_threads, test ("pp" when n_gen == 0,
    "tg" when n_prompt == 0, else "pg"), avg_tok_s, stddev_tok_s, samples_ns, samples_tok_s (from samples_ts,
    else 1e9 * (n_prompt + n_gen) / ns), build_commit, build_number, model_filename, model_type,
    model_size_bytes, cpu_info, gpu_info, backends (only when the record has it) and raw (the record as read).
    Fields the record lacks are None. Raises LlamaBenchOutputError when no record can be read."""
    text = _ANSI.sub("", text)
    records: list[dict] = []
    skipped = 0
    for value in _json_values(text):
        for item in value if isinstance(value, list) else [value]:
            if not _is_bench_record(item):
                continue
            try:
                records.append(_normalise_bench_record(item))
            except (TypeError, ValueError):
                skipped += 1
    if not records:
        detail = f" ({skipped} malformed)" if skipped else ""
        raise LlamaBenchOutputError(
            f"no llama-bench record in the output{detail}; was it run with -o jsonl or -o json?"
        )
    return records


def llama_bench_trials(records: list[dict]) -> list[dict]:
    """One trial per repetition sample, in order. llama-bench runs its own warm-up before the samples it
    reports, so none of these is a warm-up. Accepts parse_llama_bench records (raw ones are normalised)."""
    trials = []
    for rec in records:
        if "test" not in rec or "samples_tok_s" not in rec:
            rec = _normalise_bench_record(rec)
        for i, ns in enumerate(rec["samples_ns"]):
            tok_s = rec["samples_tok_s"][i] if i < len(rec["samples_tok_s"]) else None
            if tok_s is None:
                tok_s = 1e9 * (rec["n_prompt"] + rec["n_gen"]) / ns if ns > 0 else math.nan
            trials.append(
                {
                    "test": rec["test"],
                    "n_prompt": rec["n_prompt"],
                    "n_gen": rec["n_gen"],
                    "n_depth": rec["n_depth"],
                    "duration_s": ns / 1e9,
                    "tok_s": tok_s,
                }
            )
    return trials


def llama_bench_command(
    binary: str,
    model: str,
    threads: int,
    n_prompt: int,
    n_gen: int,
    repetitions: int,
    extra: list[str] | None = None,
) -> list[str]:
    """argv for llama-bench writing JSON lines. With both n_prompt and n_gen non-zero llama-bench runs two
    tests, a pp and a tg (not one pg: that is `-pg`, which can go in extra)."""
    return [
        str(binary),
        "-m",
        str(model),
        "-t",
        str(threads),
        "-p",
        str(n_prompt),
        "-n",
        str(n_gen),
        "-r",
        str(repetitions),
        "-o",
        "jsonl",
        *(extra or []),
    ]
