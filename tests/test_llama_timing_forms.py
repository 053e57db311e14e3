"""llama.cpp's end-of-run timing lines, generated from the printf formats each llama.cpp era used, printed
with each decimal mark a locale gives printf (and cut short at every character), read by parse_timings.

The formats are llama.cpp's own (format string, function), by era:
- llama_print_timings, spring 2023: "%8.2f ms / %5d runs (%8.2f ms per run)", no prompt eval, total alone;
- llama_print_timings, April 2023: adds "prompt eval time = %8.2f ms / %5d tokens (%8.2f ms per token)";
- llama_print_timings, mid-2023: "(%8.2f ms per token, %8.2f tokens per second)" after "%8.2f ms" times (the
  issue's line, "prompt eval time =   160,40 ms / ...", is of this form);
- llama_print_timings, later to September 2024: "%10.2f" times, "total time = %10.2f ms / %5d tokens";
- llama_perf_sampler_print / llama_perf_context_print (src/llama-context.cpp), September 2024 on;
- common_perf_print (common/sampling.cpp of the llama.cpp vendored by llama-cpp-python 0.3.36).
printf under a locale changes only the decimal mark of %f (no grouping without the ' flag), which is what
`cprintf` does here.
"""

from __future__ import annotations

import math
import re

import pytest

from melt.runtimes.llama_cpp_cli_output import TimingsNotFound, parse_timings

_CONV = re.compile(r"%[-+ #0]*[0-9]*(?:\.[0-9]+)?[sdf%]")


def cprintf(fmt: str, args: tuple, mark: str) -> str:
    """C printf of fmt under an LC_NUMERIC whose decimal mark is `mark`."""
    values = iter(args)

    def one(m: re.Match) -> str:
        spec = m.group(0)
        if spec == "%%":
            return "%"
        text = spec % next(values)
        return text.replace(".", mark) if spec.endswith("f") else text

    return _CONV.sub(one, fmt)


# era -> (the function name printed, [(format, label)]); TPS is the per-token part since mid-2023
TPS = "(%8.2f ms per token, %8.2f tokens per second)"
ERAS = {
    "2023-03": (
        "llama_print_timings",
        [
            ("%s:     load time = %8.2f ms", "load"),
            ("%s:   sample time = %8.2f ms / %5d runs (%8.2f ms per run)", "sample"),
            ("%s:     eval time = %8.2f ms / %5d runs (%8.2f ms per run)", "eval"),
            ("%s:    total time = %8.2f ms", "total"),
        ],
    ),
    "2023-04": (
        "llama_print_timings",
        [
            ("%s:        load time = %8.2f ms", "load"),
            ("%s:      sample time = %8.2f ms / %5d runs   (%8.2f ms per run)", "sample"),
            ("%s: prompt eval time = %8.2f ms / %5d tokens (%8.2f ms per token)", "prompt eval"),
            ("%s:        eval time = %8.2f ms / %5d runs   (%8.2f ms per run)", "eval"),
            ("%s:       total time = %8.2f ms", "total"),
        ],
    ),
    "2023-06": (  # the line is of this era: "prompt eval time =   160,40 ms / ..."
        "llama_print_timings",
        [
            ("%s:        load time = %8.2f ms", "load"),
            (f"%s:      sample time = %8.2f ms / %5d runs   {TPS}", "sample"),
            (f"%s: prompt eval time = %8.2f ms / %5d tokens {TPS}", "prompt eval"),
            (f"%s:        eval time = %8.2f ms / %5d runs   {TPS}", "eval"),
            ("%s:       total time = %8.2f ms", "total"),
        ],
    ),
    "2023-2024": (
        "llama_print_timings",
        [
            ("%s:        load time = %10.2f ms", "load"),
            (f"%s:      sample time = %10.2f ms / %5d runs   {TPS}", "sample"),
            (f"%s: prompt eval time = %10.2f ms / %5d tokens {TPS}", "prompt eval"),
            (f"%s:        eval time = %10.2f ms / %5d runs   {TPS}", "eval"),
            ("%s:       total time = %10.2f ms / %5d tokens", "total"),
        ],
    ),
    "llama_perf": (
        "llama_perf_context_print",
        [
            (f"llama_perf_sampler_print:    sampling time = %10.2f ms / %5d runs   {TPS}", "sample"),
            ("%s:        load time = %10.2f ms", "load"),
            (f"%s: prompt eval time = %10.2f ms / %5d tokens {TPS}", "prompt eval"),
            (f"%s:        eval time = %10.2f ms / %5d runs   {TPS}", "eval"),
            ("%s:       total time = %10.2f ms / %5d tokens", "total"),
            ("%s:    graphs reused = %10d", "graphs"),
        ],
    ),
    "common_perf_print": (
        "common_perf_print",
        [
            ("%s:    sampling time = %10.2f ms", "sampling"),
            ("%s:    samplers time = %10.2f ms / %5d tokens", "sample"),
            ("%s:        load time = %10.2f ms", "load"),
            (f"%s: prompt eval time = %10.2f ms / %5d tokens {TPS}", "prompt eval"),
            (f"%s:        eval time = %10.2f ms / %5d runs   {TPS}", "eval"),
            ("%s:       total time = %10.2f ms / %5d tokens", "total"),
            ("%s: unaccounted time = %10.2f ms / %5.1f %%      (total - sampling - prompt eval - eval) / (total)",
             "unaccounted"),
            ("%s:    graphs reused = %10d", "graphs"),
        ],
    ),
}  # fmt: skip


def _per(ms, n):
    return ms / n if n else math.nan


def _rate(ms, n):
    return 1e3 / ms * n if ms else math.nan


# (ms, count) per label: values of two decimals, so printf's rounding keeps them exact
RUNS = {
    "short": {"load": (3.24, 0), "sample": (0.11, 14), "sampling": (0.14, 0), "prompt eval": (0.25, 6),
              "eval": (0.35, 7), "total": (0.96, 13), "unaccounted": (0.22, 0), "graphs": (0, 6)},
    "phone": {"load": (4450.58, 0), "sample": (170.97, 136), "sampling": (171.5, 0), "prompt eval": (160.40, 5),
              "eval": (124973.60, 127), "total": (129561.47, 132), "unaccounted": (-12.5, 0), "graphs": (0, 126)},
    "empty prompt": {"load": (12.0, 0), "sample": (0.0, 0), "sampling": (0.0, 0), "prompt eval": (0.0, 0),
                     "eval": (500.0, 10), "total": (512.0, 10), "unaccounted": (0.0, 0), "graphs": (0, 0)},
}  # fmt: skip
KEYS = {
    "load": ("load_s", None),
    "sample": ("sample_s", "n_sample_runs"),
    "sampling": ("sampling_total_s", None),
    "prompt eval": ("prompt_eval_s", "n_prompt_tokens"),
    "eval": ("eval_s", "n_eval_runs"),
    "total": ("total_s", "n_total_tokens"),
    "unaccounted": ("unaccounted_s", None),
}


def line_of(fmt: str, func: str, label: str, run: dict, mark: str) -> tuple[str, dict]:
    """One generated line and the fields it must read as."""
    ms, n = run[label]
    if label == "graphs":
        return cprintf(fmt, (func, n), mark), {"n_graphs_reused": n}
    if label == "unaccounted":
        total = run["total"][0]
        return cprintf(fmt, (func, ms, 100 * ms / total if total else math.nan), mark), {"unaccounted_s": ms / 1e3}
    lead = [func] if fmt.startswith("%s") else []
    k = len(_CONV.findall(fmt)) - len(lead)
    args = lead + [ms, n, _per(ms, n), _rate(ms, n)][:k]
    seconds_key, count_key = KEYS[label]
    fields = {seconds_key: ms / 1e3}
    if count_key and "%5d" in fmt:
        fields[count_key] = n
    return cprintf(fmt, tuple(args), mark), fields


CASES = [
    (era, i, run, mark)
    for era, (_, lines) in ERAS.items()
    for i in range(len(lines))
    for run in RUNS
    for mark in (".", ",")
]


@pytest.mark.parametrize("era, i, run, mark", CASES)
def test_every_line_form_in_both_marks(era, i, run, mark):
    func, lines = ERAS[era]
    fmt, label = lines[i]
    line, fields = line_of(fmt, func, label, RUNS[run], mark)
    got = parse_timings("I " + line + "\n")  # with a log level prefix, as common_log writes it
    assert got["unparsed"] == [], line
    for key, value in fields.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), (line, key)
    has_fraction = label != "graphs"
    assert got.get("decimal_mark") == (mark if has_fraction else None), line


def block_of(era: str, run: str, mark: str) -> tuple[str, dict]:
    func, lines = ERAS[era]
    text, fields = [], {}
    for fmt, label in lines:
        line, f = line_of(fmt, func, label, RUNS[run], mark)
        text.append(line)
        fields.update(f)
    return "\n".join(text) + "\n", fields


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("mark", [".", ","])
def test_whole_blocks_give_the_rates(era, run, mark):
    text, fields = block_of(era, run, mark)
    got = parse_timings("some generated text\n" + text)
    assert got["unparsed"] == [] and got["decimal_mark"] == mark
    for key, value in fields.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    ms, n = RUNS[run]["prompt eval"]
    if "n_prompt_tokens" in fields and ms > 0:
        assert got["prefill_tok_s"] == pytest.approx(n / (ms / 1e3), rel=1e-12)
    else:
        assert "prefill_tok_s" not in got  # no prompt eval line, or 0.00 ms: no rate, never 0 or inf
    ms, n = RUNS[run]["eval"]
    assert got["decode_tok_s"] == pytest.approx(n / (ms / 1e3), rel=1e-12)


FULL_LINES = sorted(
    {
        line_of(fmt, func, label, RUNS[run], mark)[0]
        for _era, (func, lines) in ERAS.items()
        for fmt, label in lines
        for run in ("phone", "empty prompt")
        for mark in (".", ",")
    }
)


@pytest.mark.parametrize("line", FULL_LINES)
def test_a_line_cut_short_anywhere_reads_nothing_wrong(line):
    """Cut at every character. As the last text of a log (no newline after it, as a killed process leaves
    it) the cut line is never read. Followed by a newline, either it is listed as unparsed or what it reads is
    exactly what the whole line reads (a cut right after "ms" or "tokens" leaves whole values). Never another
    value."""
    whole = parse_timings(line + "\n")
    assert whole["unparsed"] == []
    for cut in range(1, len(line)):
        part = line[:cut]
        try:
            at_end = parse_timings("I earlier line\n" + part)
        except TimingsNotFound:
            continue  # cut before the function name: not a timing line at all
        assert at_end == {"unparsed": [part.strip()]}, part
        got = parse_timings(part + "\n")
        read = {k: v for k, v in got.items() if k not in ("unparsed", "format", "decimal_mark")}
        if got["unparsed"]:
            assert got["unparsed"] == [part.strip()] and not read, part
            continue
        assert read, part
        for key, value in read.items():
            if key in ("prefill_tok_s", "decode_tok_s"):
                continue  # derived from the two below, checked through them
            assert key in whole and value == whole[key], (part, key)
