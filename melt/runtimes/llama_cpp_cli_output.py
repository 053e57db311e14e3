"""Parse what llama.cpp's own programs print, on the host (an Android phone has no Python).

Two sources:

- the end-of-run timing block of `llama-cli` / `llama-completion` (`parse_timings`). Three spellings are
  known: `llama_print_timings:` (before September 2024), `llama_perf_sampler_print:` +
  `llama_perf_context_print:` (from then on) and `common_perf_print:` (current builds; it splits sampling
  into "sampling time" and "samplers time" and adds "unaccounted time"). Any log prefix (level letter,
  timestamp, `[pid]`, ANSI colour) before the function name is ignored;
- `llama-bench -o jsonl` or `-o json` (`parse_llama_bench`), whose per-repetition samples are melt's trials
  (`llama_bench_trials`), and the flash_attn each record says it ran with (`reported_flash_attn`);
- a tool's `--help`, for how it takes `-fa` (`flash_attn_form`, `flash_attn_args`).

Standard library only.
"""

from __future__ import annotations

import json
import math
import re

__all__ = [
    "TimingsNotFound",
    "LlamaBenchOutputError",
    "FlashAttnUnsupported",
    "parse_timings",
    "parse_llama_bench",
    "llama_bench_trials",
    "llama_bench_command",
    "flash_attn_form",
    "flash_attn_args",
    "reported_flash_attn",
]


class TimingsNotFound(ValueError):
    """The text has no llama.cpp timing line at all."""


class LlamaBenchOutputError(ValueError):
    """No llama-bench record could be read from the text."""


class FlashAttnUnsupported(ValueError):
    """The tool cannot be told the flash attention setting the case asks for (or its help does not say how)."""


# ---------------------------------------------------------------------------------------------------------------
# llama-cli / llama-completion timing lines
#
# The lines come from printf-style format strings in llama.cpp, all of them "%10.2f ms" (or "%8.2f ms" before
# mid-2023) for times, "%5d" for counts and "%8.2f" inside the parentheses:
#   llama.cpp llama_print_timings (llama.cpp, 2023 to September 2024; earliest builds "(%8.2f ms per run)",
#     then "(%8.2f ms per token)", from mid-2023 "(%8.2f ms per token, %8.2f tokens per second)", and
#     "total time" without "/ N tokens" at first);
#   llama_perf_sampler_print / llama_perf_context_print (src/llama-context.cpp, from September 2024);
#   common_perf_print (common/sampling.cpp, current builds: "sampling time = X ms", "samplers time = X ms /
#     N tokens", "unaccounted time = X ms / %5.1f %", "graphs reused = %10d").
# printf writes the decimal mark of the LC_NUMERIC locale. llama.cpp's tools start in the C locale, but
# common/console.cpp console::init() calls setlocale(LC_ALL, "") on POSIX, and llama-cli / llama-completion
# call console::init() after their own setlocale(LC_NUMERIC, "C") (tools/completion/completion.cpp, llama.cpp
# vendored by llama-cpp-python 0.3.36), so under de_DE, fr_FR, ru_RU ... the times read "160,40 ms". Either
# mark is read, one mark a line. printf groups thousands only with the ' flag, which llama.cpp never uses: a
# number such as "1.234,56" or "1,234.56" is not its output and is not read.

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Any line holding one of these looks like a timing line: it is either read or listed in `unparsed`.
_TIMING_HINT = re.compile(r"llama_perf|llama_print_timings|common_perf_print")
_FUNC = re.compile(
    r"(?P<func>llama_perf_(?:context|sampler)_print|llama_print_timings|common_perf_print):(?P<body>.*)$"
)
_NUM = r"[0-9]+(?:[.,][0-9]+)?"
# 0/0 and x/0 in the per-token figures when a count is 0 (glibc and bionic print nan, -nan, inf, -inf)
_NONFINITE = r"-?(?:nan|inf)"
_PER = (
    rf"\(\s*(?P<per>{_NUM}|{_NONFINITE})\s*ms per (?:token|run)"
    rf"(?:,\s*(?P<rate>{_NUM}|{_NONFINITE})\s*tokens per second)?\s*\)"
)
# "prompt eval time =    4245.68 ms /     8 tokens (  530.71 ms per token,     1.88 tokens per second)"
_TIME = re.compile(
    rf"(?P<label>load|prompt eval|eval|total|sampling|sample|samplers) time\s*=\s*(?P<ms>{_NUM})\s*ms"
    rf"(?:\s*/\s*(?P<n>[0-9]+)\s*(?:tokens?|runs?))?"
    rf"(?:\s*{_PER})?"
)
# "unaccounted time =     12.34 ms /   0.1 %      (total - sampling - prompt eval - eval) / (total)"
_UNACCOUNTED = re.compile(
    rf"unaccounted time\s*=\s*(?P<ms>-?{_NUM})\s*ms\s*/\s*(?P<pct>-?{_NUM}|{_NONFINITE})\s*%"
    r"\s*\(total - sampling - prompt eval - eval\) / \(total\)"
)
# "graphs reused = %10d": the count ends the line, so only its printf width tells a whole one from a cut one
_GRAPHS = re.compile(r"graphs reused\s*= (?P<n> *[0-9]+)")

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


def _decimal_marks(*numbers: str | None) -> set[str]:
    return {c for n in numbers if n for c in n if c in ".,"}


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _read_timing_body(func: str, body: str) -> tuple[dict, str | None] | None:
    """One timing line's text after `func:`, as ({key: value}, its decimal mark or None when it has no
    fraction); None when it is not exactly a known line (a line mixing both marks is not one printf's
    output under one locale, so it is not read either)."""
    body = body.strip()
    m = _TIME.fullmatch(body)
    if m:
        marks = _decimal_marks(m["ms"], m["per"], m["rate"])
        if len(marks) > 1:
            return None
        label, ms, n = m["label"], _number(m["ms"]), m["n"]
        if label == "sampling":
            # llama_perf_sampler_print: "sampling time = X ms / N runs" (the sampler chain, like the old
            # "sample time"); common_perf_print: "sampling time = X ms" (chain + common/sampling overhead).
            if n is None:
                if func != "common_perf_print" or m["per"] is not None:
                    return None
                return {"sampling_total_s": ms / 1e3}, next(iter(marks), None)
            label = "sample"
        seconds_key, count_key, count_needed = _FIELDS[label]
        if n is None and (count_needed or m["per"] is not None):
            return None  # cut short after "ms", or a rate without its count: never guess the count
        if n is not None and count_key is None:
            return None
        out = {seconds_key: ms / 1e3}
        if n is not None:
            out[count_key] = int(n)
        return out, next(iter(marks), None)
    m = _UNACCOUNTED.fullmatch(body)
    if m:
        marks = _decimal_marks(m["ms"], m["pct"])
        if len(marks) > 1:
            return None
        return {"unaccounted_s": _number(m["ms"]) / 1e3}, next(iter(marks), None)
    m = _GRAPHS.fullmatch(body)
    if m and len(m["n"]) >= 10:
        return {"n_graphs_reused": int(m["n"])}, None
    return None


def parse_timings(text: str) -> dict:
    """llama.cpp's end-of-run timing block, in seconds and tokens per second.

    Keys (each only when its line was read): load_s, prompt_eval_s, n_prompt_tokens, prefill_tok_s
    (n_prompt_tokens / prompt_eval_s), eval_s, n_eval_runs, decode_tok_s (n_eval_runs / eval_s), sample_s,
    n_sample_runs, total_s, n_total_tokens; from current builds (common_perf_print) also sampling_total_s,
    unaccounted_s and n_graphs_reused; decimal_mark ("." or ",", of the lines of the block taken; "mixed" if
    they differ); format ("llama_perf", "llama_print_timings" or "common_perf_print", of the block taken,
    when a line was read). Always: unparsed (every timing-looking line, whole text, that could not be read
    exactly, the text's last line among them when no newline ends it: it was cut; nothing in it is guessed
    at). Line forms and the locale's part: see the comment above.

    A block ends where a field repeats. When the text holds several blocks, the last complete one (load,
    prompt eval, eval and total all read) is taken, else the last one. Raises TimingsNotFound when no line
    looks like a timing line.
    """
    blocks: list[dict] = []
    current: dict = {}
    unparsed: list[str] = []
    seen_any = False
    for raw_line in text.splitlines(keepends=True):
        line = _ANSI.sub("", raw_line).rstrip("\r\n")
        if not _TIMING_HINT.search(line):
            continue
        seen_any = True
        m = _FUNC.search(line)
        # llama.cpp ends every log line with a newline: a last line without one was cut (the process died,
        # or its log thread was stopped mid-write), so whatever it seems to say is not read
        whole = raw_line.endswith(("\n", "\r"))
        read = _read_timing_body(m["func"], m["body"]) if m and whole else None
        if read is None:
            unparsed.append(line.strip())
            continue
        fields, mark = read
        fmt = _FORMATS[m["func"]]
        if current and (fmt != current["format"] or any(k in current for k in fields)):
            blocks.append(current)
            current = {}
        current.setdefault("format", fmt)
        current.update(fields)
        if mark:
            current.setdefault("_marks", set()).add(mark)
    if current:
        blocks.append(current)
    if not seen_any:
        raise TimingsNotFound("no llama.cpp timing line (llama_perf_*, llama_print_timings, common_perf_print)")

    complete = [b for b in blocks if all(k in b for k in _COMPLETE)]
    chosen = dict(complete[-1] if complete else blocks[-1] if blocks else {})
    marks = chosen.pop("_marks", set())
    if marks:
        chosen["decimal_mark"] = marks.pop() if len(marks) == 1 else "mixed"
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
    threads: int | None,
    n_prompt: int,
    n_gen: int,
    repetitions: int,
    extra: list[str] | None = None,
) -> list[str]:
    """argv for llama-bench writing JSON lines. With both n_prompt and n_gen non-zero llama-bench runs two
    tests, a pp and a tg (not one pg: that is `-pg`, which can go in extra). threads None: no -t, so
    llama-bench's own default (common_cpu_get_num_math())."""
    return [
        str(binary),
        "-m",
        str(model),
        *(["-t", str(threads)] if threads is not None else []),
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


# ---------------------------------------------------------------------------------------------------------------
# -fa: how a given binary takes it, read from its --help
#
# llama-bench (print_usage, examples/ then tools/llama-bench/llama-bench.cpp):
#   no -fa line              before flash attention (ggml-org/llama.cpp PR 5021, 2024-04-30);
#   "-fa, --flash-attn <0|1>" from PR 5021 until the flash-attention-auto change of late August 2025 (e.g. commit
#       20e30b2534604c1790e0557b6f17d4fc31e93931). It reads the value with string_split<bool> (istream >> bool):
#       "on" or "off" is not an error there, both silently read as 0, so "-fa on" runs WITHOUT flash attention.
#       Its JSON says "flash_attn": true|false;
#   "-fa, --flash-attn <on|off|auto>" after it (commit 0104b151c56d54143e2e3554aabe9e2b2b8dbdba; the llama.cpp
#       vendored by llama-cpp-python 0.3.36). It also takes 1/0/-1 (common_arg_utils::is_truthy). Its JSON says
#       "flash_attn": 1|0|-1 (enum llama_flash_attn_type: enabled, disabled, auto).
# llama-cli / llama-completion (common/arg.cpp, printed as "-fa,   --flash-attn HINT   help"):
#   "-fa,   --flash-attn" with no value, "enable Flash Attention" (PR 5021 to August 2025);
#   "-fa,   --flash-attn FA" then "[on|off|auto]" after (numeric aliases from PR 15746, 2025-09-02).

_FA_LINE = re.compile(r"^\s*-fa,\s+--flash-attn\b(?P<rest>.*)$", re.MULTILINE)
_FA_CHOICES = re.compile(r"\s?[<\[](?P<choices>[^>\]]*)[>\]]")
_FA_WORD_HINT = re.compile(r" (?P<hint>[A-Z]+)(?:\s|$)")


def flash_attn_form(help_text: str) -> dict:
    """How the tool whose `--help` printed help_text takes flash attention: {"form": ..., "line": the -fa line
    or None}. form: "0|1" (value 1 or 0), "on|off" (value on or off; auto is left to the tool's default),
    "flag" (bare -fa to enable, nothing to disable) or "none" (no -fa line: a build without flash attention).
    Forms and where each comes from: the comment above. Raises FlashAttnUnsupported when a -fa line is there
    but says none of these (a form not seen yet is not guessed)."""
    text = _ANSI.sub("", help_text)
    m = _FA_LINE.search(text)
    if not m:
        return {"form": "none", "line": None}
    line, rest = m.group(0).strip(), m["rest"]
    choices = _FA_CHOICES.match(rest)
    if choices:
        values = {v.strip() for v in choices["choices"].split("|")}
        if {"on", "off"} <= values:
            return {"form": "on|off", "line": line}
        if {"0", "1"} <= values:
            return {"form": "0|1", "line": line}
    elif _FA_WORD_HINT.match(rest):  # "-fa, --flash-attn FA   set Flash Attention use ('on', 'off', or 'auto'...)"
        if "'on'" in rest and "'off'" in rest:
            return {"form": "on|off", "line": line}
    elif re.match(r"\s{2,}enable flash attention", rest, re.IGNORECASE):
        return {"form": "flag", "line": line}
    raise FlashAttnUnsupported(f"cannot tell how it takes flash attention from its help line {line!r}")


def flash_attn_args(form: dict, asked) -> list[str]:
    """The -fa arguments that ask for flash attention as asked ("on", "off" or "auto"; true / false are on /
    off) in the given form (flash_attn_form). auto is no argument in every form: the tool's own default then
    applies, which is auto in the "on|off" form and off in the older ones (they have no auto). Raises
    FlashAttnUnsupported when the build has no flash attention and it is asked for."""
    asked = {True: "on", False: "off"}.get(asked, asked) if isinstance(asked, bool) else asked
    if asked not in ("on", "off", "auto"):
        raise ValueError(f"flash attention asked {asked!r}: not on, off or auto")
    kind = form["form"]
    if kind not in ("0|1", "on|off", "flag", "none"):
        raise FlashAttnUnsupported(f"unknown -fa form {kind!r}")
    if asked == "auto":
        return []
    on = asked == "on"
    if kind == "0|1":
        return ["-fa", "1" if on else "0"]
    if kind == "on|off":
        return ["-fa", "on" if on else "off"]
    if kind == "flag":
        return ["-fa"] if on else []
    if on:
        raise FlashAttnUnsupported("this build has no -fa option (no flash attention): flash_attn cannot be on")
    return []


def reported_flash_attn(record: dict) -> str | None:
    """What a llama-bench record (parse_llama_bench's, or raw) says it ran with: "on", "off", "auto", or None
    when the record has no flash_attn field (builds before it). Old builds write true/false, new ones the enum
    1/0/-1 (see the comment above). Raises LlamaBenchOutputError on any other value."""
    raw = record.get("raw", record)
    if "flash_attn" not in raw:
        return None
    value = raw["flash_attn"]
    if value is True or value == 1:
        return "on"
    if value is False or value == 0:
        return "off"
    if value == -1:
        return "auto"
    raise LlamaBenchOutputError(f"llama-bench record has flash_attn {value!r}: not true/false or 1/0/-1")
