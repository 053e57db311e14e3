"""llama.cpp CLI output read on the host: timing blocks of llama-cli / llama-completion, llama-bench JSON."""

from __future__ import annotations

import json
import re

import pytest

from melt.runtimes.llama_cpp_cli_output import (
    LlamaBenchOutputError,
    TimingsNotFound,
    llama_bench_command,
    llama_bench_trials,
    parse_llama_bench,
    parse_timings,
)

# Copied from tests/samples/llama_cpp_timings.txt (vendored from ../shared/samples).
# New form (llama_perf_*), llama-cli on an Orange Pi 3B. source: ggml-org/llama.cpp issue 34
NEW_FORM = """\
llama_perf_sampler_print:    sampling time =     170.97 ms /   136 runs   (    1.26 ms per token,   795.48 tokens per second)
llama_perf_context_print:        load time =    4450.58 ms
llama_perf_context_print: prompt eval time =    4245.68 ms /     8 tokens (  530.71 ms per token,     1.88 tokens per second)
llama_perf_context_print:        eval time =  124973.60 ms /   127 runs   (  984.04 ms per token,     1.02 tokens per second)
llama_perf_context_print:       total time =  129561.47 ms /   135 tokens
"""  # noqa: E501
# Old form (llama_print_timings). source: ggml-org/llama.cpp issue 9353
OLD_FORM = """\
llama_print_timings:        load time =    1933.61 ms
llama_print_timings:      sample time =      17.64 ms /   344 runs   (    0.05 ms per token, 19495.61 tokens per second)
llama_print_timings: prompt eval time =    1161.79 ms /    62 tokens (   18.74 ms per token,    53.37 tokens per second)
llama_print_timings:        eval time =    7041.42 ms /   342 runs   (   20.59 ms per token,    48.57 tokens per second)
llama_print_timings:       total time =   10797.30 ms /   404 tokens
"""
# Current builds print the block from common_perf_print (common/sampling.cpp); values constructed.
COMMON_FORM = """\
common_perf_print:    sampling time =      25.00 ms
common_perf_print:    samplers time =      20.00 ms /    65 tokens
common_perf_print:        load time =     500.00 ms
common_perf_print: prompt eval time =     100.00 ms /    16 tokens (    6.25 ms per token,   160.00 tokens per second)
common_perf_print:        eval time =    1000.00 ms /    63 runs   (   15.87 ms per token,    63.00 tokens per second)
common_perf_print:       total time =    1200.00 ms /    79 tokens
common_perf_print: unaccounted time =      75.00 ms /   6.2 %      (total - sampling - prompt eval - eval) / (total)
common_perf_print:    graphs reused =         61
"""

NEW_EXPECTED = {
    "sample_s": 0.17097,
    "n_sample_runs": 136,
    "load_s": 4.45058,
    "prompt_eval_s": 4.24568,
    "n_prompt_tokens": 8,
    "prefill_tok_s": 8 / 4.24568,
    "eval_s": 124.9736,
    "n_eval_runs": 127,
    "decode_tok_s": 127 / 124.9736,
    "total_s": 129.56147,
    "n_total_tokens": 135,
}
OLD_EXPECTED = {
    "load_s": 1.93361,
    "sample_s": 0.01764,
    "n_sample_runs": 344,
    "prompt_eval_s": 1.16179,
    "n_prompt_tokens": 62,
    "prefill_tok_s": 62 / 1.16179,
    "eval_s": 7.04142,
    "n_eval_runs": 342,
    "decode_tok_s": 342 / 7.04142,
    "total_s": 10.7973,
    "n_total_tokens": 404,
}


def assert_timings(got: dict, expected: dict, mark: str = ".") -> None:
    assert got.get("decimal_mark") == mark
    numbers = {k: v for k, v in got.items() if k not in ("unparsed", "format", "decimal_mark")}
    assert set(numbers) == set(expected)
    for key, value in expected.items():
        if isinstance(value, int):
            assert numbers[key] == value and isinstance(numbers[key], int), key
        else:
            assert numbers[key] == pytest.approx(value, rel=1e-12), key


def test_new_form():
    got = parse_timings(NEW_FORM)
    assert_timings(got, NEW_EXPECTED)
    assert got["load_s"] == pytest.approx(4.45058)
    assert got["prefill_tok_s"] == pytest.approx(1.884268, abs=1e-6)
    assert got["decode_tok_s"] == pytest.approx(1.0162146, abs=1e-6)
    assert got["format"] == "llama_perf"
    assert got["unparsed"] == []


def test_old_form():
    got = parse_timings(OLD_FORM)
    assert_timings(got, OLD_EXPECTED)
    assert got["prefill_tok_s"] == pytest.approx(53.365927, abs=1e-6)
    assert got["decode_tok_s"] == pytest.approx(48.5697487, abs=1e-6)
    assert got["format"] == "llama_print_timings"
    assert got["unparsed"] == []


def test_common_perf_print_form():
    got = parse_timings(COMMON_FORM)
    assert_timings(
        got,
        {
            "sampling_total_s": 0.025,
            "sample_s": 0.02,
            "n_sample_runs": 65,
            "load_s": 0.5,
            "prompt_eval_s": 0.1,
            "n_prompt_tokens": 16,
            "prefill_tok_s": 160.0,
            "eval_s": 1.0,
            "n_eval_runs": 63,
            "decode_tok_s": 63.0,
            "total_s": 1.2,
            "n_total_tokens": 79,
            "unaccounted_s": 0.075,
            "n_graphs_reused": 61,
        },
    )
    assert got["format"] == "common_perf_print"
    assert got["unparsed"] == []


def test_graphs_reused_line_of_llama_perf_context_print():
    got = parse_timings(NEW_FORM + "llama_perf_context_print:    graphs reused =         42\n")
    assert got["n_graphs_reused"] == 42
    assert got["unparsed"] == []


def with_prefix(block: str, prefix: str) -> str:
    return "".join(prefix + line + "\n" for line in block.splitlines())


@pytest.mark.parametrize(
    "prefix",
    [
        "I ",
        "0.00.123.456 I ",
        "[1717171717] ",
        "\x1b[32mI \x1b[0m",
        "\x1b[34m0.01.002.003\x1b[0m \x1b[32mI \x1b[0m",
    ],
)
def test_log_prefixes(prefix):
    assert_timings(parse_timings(with_prefix(NEW_FORM, prefix)), NEW_EXPECTED)
    assert_timings(parse_timings(with_prefix(OLD_FORM, prefix)), OLD_EXPECTED)


def test_ansi_colour_around_the_whole_line_and_crlf():
    text = "".join(f"\x1b[1m{line}\x1b[0m\r\n" for line in NEW_FORM.splitlines())
    got = parse_timings(text)
    assert_timings(got, NEW_EXPECTED)
    assert got["unparsed"] == []


def test_interleaved_with_generated_text_and_logs():
    lines = NEW_FORM.splitlines()
    text = (
        "build: 4567 (abcdef12) with clang for aarch64-linux-android\n"
        "main: llama threadpool init, n_threads = 4\n"
        "Once upon a time there was a little robot who liked to count tokens.\n"
        + lines[0]
        + "\nIt counted them all day long.\n"
        + "\n".join(lines[1:3])
        + "\nThe end. [end of text]\n"
        + "\n".join(lines[3:])
        + "\nllama_memory_breakdown_print: | memory breakdown [MiB] | total   free    self   model   context |\n"
    )
    got = parse_timings(text)
    assert_timings(got, NEW_EXPECTED)
    assert got["unparsed"] == []


def test_timing_line_right_after_text_without_newline():
    text = "...and so the story ends." + NEW_FORM
    assert_timings(parse_timings(text), NEW_EXPECTED)


def test_twice_printed_block_takes_the_last():
    second = NEW_FORM.replace("4450.58", "4451.00").replace("124973.60", "125000.00")
    got = parse_timings(NEW_FORM + "some text\n" + second)
    assert got["load_s"] == pytest.approx(4.451)
    assert got["eval_s"] == pytest.approx(125.0)
    assert got["decode_tok_s"] == pytest.approx(127 / 125.0)
    assert got["sample_s"] == pytest.approx(0.17097)


def test_last_complete_block_when_the_second_is_cut_short():
    second = "\n".join(NEW_FORM.replace("4450.58", "9999.99").splitlines()[:3]) + "\n"  # no eval, no total
    got = parse_timings(NEW_FORM + second)
    assert_timings(got, NEW_EXPECTED)
    assert got["unparsed"] == []


def test_garbled_line_goes_to_unparsed_and_is_not_guessed():
    lines = NEW_FORM.splitlines()
    lines[3] = "llama_perf_context_print:        eval time =  124973.60 ms /   12"  # cut mid-number
    got = parse_timings("\n".join(lines) + "\n")
    assert "eval_s" not in got and "n_eval_runs" not in got and "decode_tok_s" not in got
    assert got["unparsed"] == ["llama_perf_context_print:        eval time =  124973.60 ms /   12"]
    assert got["load_s"] == pytest.approx(4.45058)
    assert got["prefill_tok_s"] == pytest.approx(8 / 4.24568)


@pytest.mark.parametrize(
    "bad",
    [
        "llama_perf_context_print: prompt eval time =    4245.",
        "llama_perf_context_print: prompt eval time =    4245.68 ms",  # count cut off
        "llama_perf_context_print: prompt eval time =    4245.68 ms /     8 tokens (  530.71 ms per tok",
        "llama_perf_context_print: warp drive time =      1.00 ms",
        "llama_perf_context_print",
        "llama_perf_gpu_print:        load time =    4450.58 ms",
    ],
)
def test_unreadable_timing_lines(bad):
    got = parse_timings(bad + "\n")
    assert got == {"unparsed": [bad]}


# The issue's line (melt issue 10): llama.cpp on a board with a comma-decimal locale.
ISSUE_LINE = "llama_print_timings: prompt eval time =   160,40 ms /     5 tokens (   32,08 ms per token,    31,17 tokens per second)"  # noqa: E501


def test_issue_line_reads_with_the_comma_mark():
    got = parse_timings(ISSUE_LINE + "\n")
    assert got["prompt_eval_s"] == pytest.approx(0.16040, rel=1e-12) and got["n_prompt_tokens"] == 5
    assert got["prefill_tok_s"] == pytest.approx(5 / 0.16040, rel=1e-12)
    assert got["decimal_mark"] == "," and got["format"] == "llama_print_timings" and got["unparsed"] == []


def to_comma(block: str) -> str:
    """A block as printf writes it under a comma-decimal LC_NUMERIC: every decimal point becomes a comma."""
    return re.sub(r"(?<=[0-9])\.(?=[0-9])", ",", block)


@pytest.mark.parametrize("block, expected", [(NEW_FORM, NEW_EXPECTED), (OLD_FORM, OLD_EXPECTED)])
def test_sample_blocks_under_a_comma_locale_read_the_same(block, expected):
    got = parse_timings(to_comma(block))
    assert_timings(got, expected, mark=",")
    assert got["unparsed"] == []


def test_common_perf_print_block_under_a_comma_locale():
    got = parse_timings(to_comma(COMMON_FORM))
    assert got["decimal_mark"] == "," and got["unparsed"] == []
    assert got["unaccounted_s"] == pytest.approx(0.075) and got["sampling_total_s"] == pytest.approx(0.025)
    assert got["decode_tok_s"] == pytest.approx(63.0)


@pytest.mark.parametrize(
    "bad",
    [
        # printf's %f never groups thousands: these are not llama.cpp's and are not read as 1234.56
        "llama_perf_context_print:        load time =   1.234,56 ms",
        "llama_perf_context_print:        load time =   1,234.56 ms",
        "llama_perf_context_print:        load time =   1 234,56 ms",
        # one line is one printf under one locale: both marks in it is not llama.cpp's output
        "llama_print_timings: prompt eval time =   160,40 ms /     5 tokens (   32.08 ms per token,    31,17 tokens per second)",  # noqa: E501
        "llama_perf_context_print: prompt eval time =    160.40 ms /     5 tokens (   32,08 ms per token,    31.17 tokens per second)",  # noqa: E501
        "common_perf_print: unaccounted time =       0,22 ms /  23.3 %      (total - sampling - prompt eval - eval) / (total)",  # noqa: E501
        "llama_print_timings: prompt eval time =   160,40 ms /     5 tokens (   32,08 ms per token,    31,17 tokens per",  # noqa: E501
    ],
)
def test_grouped_or_mixed_numbers_are_not_read(bad):
    assert parse_timings(bad + "\n") == {"unparsed": [bad]}


def test_lines_of_both_marks_in_one_block_say_mixed():
    lines = NEW_FORM.splitlines()
    got = parse_timings("\n".join([*lines[:3], to_comma(lines[3]), lines[4]]) + "\n")
    assert got["decimal_mark"] == "mixed"
    assert got["eval_s"] == pytest.approx(124.9736) and got["load_s"] == pytest.approx(4.45058)


@pytest.mark.parametrize(
    "cut", ["       total time =  129561.47 ms / ", "       total time =  129561.47 ms /   135 tokens"]
)
def test_a_last_line_without_its_newline_was_cut_and_is_not_read(cut):
    """llama.cpp ends each log line with a newline; a text whose last line has none was cut mid-write, even
    where what is left looks whole."""
    text = "".join(NEW_FORM.splitlines(keepends=True)[:4]) + "llama_perf_context_print: " + cut
    got = parse_timings(text)
    assert got["unparsed"] == ["llama_perf_context_print: " + cut.rstrip()]
    assert "total_s" not in got and got["eval_s"] == pytest.approx(124.9736)


@pytest.mark.parametrize("cut", range(1, 10))
def test_graphs_reused_cut_before_its_printf_width_is_not_read(cut):
    line = "llama_perf_context_print:    graphs reused =         42"
    got = parse_timings(NEW_FORM + line[: len(line) - 10 + cut] + "\n")
    assert "n_graphs_reused" not in got and got["unparsed"] == [line[: len(line) - 10 + cut].strip()]


def test_garbled_line_in_a_full_block_keeps_the_rest():
    got = parse_timings(NEW_FORM + "llama_perf_context_print: ???\n")
    assert_timings(got, NEW_EXPECTED)
    assert got["unparsed"] == ["llama_perf_context_print: ???"]


def test_zero_prompt_tokens_has_no_prefill_rate():
    text = (
        "llama_perf_context_print: prompt eval time =       0.00 ms /     0 tokens (     nan ms per token,"
        "      nan tokens per second)\n"
        "llama_perf_context_print:        eval time =     500.00 ms /    10 runs   (   50.00 ms per token,"
        "    20.00 tokens per second)\n"
    )
    got = parse_timings(text)
    assert got["prompt_eval_s"] == 0.0 and got["n_prompt_tokens"] == 0
    assert "prefill_tok_s" not in got
    assert got["decode_tok_s"] == pytest.approx(20.0)
    assert "load_s" not in got and "total_s" not in got


@pytest.mark.parametrize("text", ["", "hello world\nmain: done\n", "llama_model_loader: loaded meta data\n"])
def test_no_timing_lines_raises(text):
    with pytest.raises(TimingsNotFound):
        parse_timings(text)
    assert issubclass(TimingsNotFound, ValueError)


# Copied from tests/samples/llama_bench.json (vendored from ../shared/samples): llama-bench -o json, build 1275.
BENCH_JSON = """\
[
  {
    "build_commit": "3469684",
    "build_number": 1275,
    "cuda": true,
    "metal": false,
    "gpu_blas": true,
    "blas": true,
    "cpu_info": "13th Gen Intel(R) Core(TM) i9-13900K",
    "gpu_info": "NVIDIA GeForce RTX 3090 Ti",
    "model_filename": "models/7B/ggml-model-q4_0.gguf",
    "model_type": "llama 7B mostly Q4_0",
    "model_size": 3825065984,
    "model_n_params": 6738415616,
    "n_batch": 512,
    "n_threads": 16,
    "f16_kv": true,
    "n_gpu_layers": 99,
    "main_gpu": 0,
    "mul_mat_q": true,
    "tensor_split": "0.00",
    "n_prompt": 512,
    "n_gen": 0,
    "test_time": "2023-09-23T12:09:57Z",
    "avg_ns": 212365953,
    "stddev_ns": 985423,
    "avg_ts": 2410.974041,
    "stddev_ts": 11.163766,
    "samples_ns": [ 213837238, 211635853, 212328053, 211329715, 212698907 ],
    "samples_ts": [ 2394.34, 2419.25, 2411.36, 2422.75, 2407.16 ]
  }
]
"""
SAMPLE_NS = [213837238, 211635853, 212328053, 211329715, 212698907]
SAMPLE_TS = [2394.34, 2419.25, 2411.36, 2422.75, 2407.16]


def assert_sample_record(rec: dict) -> None:
    assert rec["n_prompt"] == 512
    assert rec["n_gen"] == 0
    assert rec["n_depth"] == 0
    assert rec["n_threads"] == 16
    assert rec["test"] == "pp"
    assert rec["avg_tok_s"] == 2410.974041
    assert rec["stddev_tok_s"] == 11.163766
    assert rec["samples_ns"] == SAMPLE_NS
    assert rec["samples_tok_s"] == SAMPLE_TS
    assert rec["build_commit"] == "3469684"
    assert rec["build_number"] == 1275
    assert rec["model_filename"] == "models/7B/ggml-model-q4_0.gguf"
    assert rec["model_type"] == "llama 7B mostly Q4_0"
    assert rec["model_size_bytes"] == 3825065984
    assert rec["cpu_info"] == "13th Gen Intel(R) Core(TM) i9-13900K"
    assert rec["gpu_info"] == "NVIDIA GeForce RTX 3090 Ti"
    assert "backends" not in rec
    assert rec["raw"]["cuda"] is True and rec["raw"]["avg_ns"] == 212365953


def test_llama_bench_json_array():
    records = parse_llama_bench(BENCH_JSON)
    assert len(records) == 1
    assert_sample_record(records[0])


def test_llama_bench_json_array_with_log_lines_around():
    text = (
        "[1717171717] warming up\n"
        "ggml_vulkan: Found 1 Vulkan devices:\n" + BENCH_JSON + "\nllama_perf_context_print: ignored here\n"
    )
    records = parse_llama_bench(text)
    assert len(records) == 1
    assert_sample_record(records[0])


def test_llama_bench_jsonl_with_a_log_line_before():
    record = json.loads(BENCH_JSON)[0]
    tg = dict(record, n_prompt=0, n_gen=128, avg_ts=20.5, stddev_ts=0.1, samples_ts=[20.4, 20.6])
    tg["samples_ns"] = [6274509803, 6213592233]
    text = "main: n_threads = 16\n" + json.dumps(record) + "\n" + json.dumps(tg) + "\n"
    records = parse_llama_bench(text)
    assert [r["test"] for r in records] == ["pp", "tg"]
    assert_sample_record(records[0])
    assert records[1]["avg_tok_s"] == 20.5
    assert records[1]["samples_tok_s"] == [20.4, 20.6]


def test_llama_bench_tg_without_samples_ts():
    line = (
        '{"build_commit": "b1a2c3d", "build_number": 5000, "cpu_info": "ARMv8 Processor", "gpu_info": "",'
        ' "backends": "CPU", "model_filename": "/data/local/tmp/q.gguf", "model_type": "qwen2 0.5B Q4_K - Medium",'
        ' "model_size": 397808192, "n_threads": 4, "n_prompt": 0, "n_gen": 32,'
        ' "avg_ts": 32.0, "stddev_ts": 0.0, "samples_ns": [ 1000000000, 800000000 ]}'
    )
    records = parse_llama_bench(line + "\n")
    (rec,) = records
    assert rec["test"] == "tg"
    assert rec["samples_tok_s"] == [32.0, 40.0]
    assert rec["backends"] == "CPU"
    assert rec["n_depth"] == 0
    trials = llama_bench_trials(records)
    assert trials == [
        {"test": "tg", "n_prompt": 0, "n_gen": 32, "n_depth": 0, "duration_s": 1.0, "tok_s": 32.0},
        {"test": "tg", "n_prompt": 0, "n_gen": 32, "n_depth": 0, "duration_s": 0.8, "tok_s": 40.0},
    ]


def test_llama_bench_record_with_depth_and_pg():
    rec = {
        "build_commit": "abc1234",
        "build_number": 6000,
        "n_threads": 8,
        "n_prompt": 512,
        "n_gen": 0,
        "n_depth": 4096,
        "avg_ts": 100.0,
        "stddev_ts": 1.0,
        "samples_ns": [5120000000, 5120000000],
    }
    pg = dict(rec, n_prompt=64, n_gen=16, n_depth=0, samples_ns=[1000000000], avg_ts=80.0)
    records = parse_llama_bench(json.dumps(rec) + "\n" + json.dumps(pg) + "\n")
    assert records[0]["n_depth"] == 4096
    assert records[0]["test"] == "pp"
    # llama-bench's tokens per second leave the depth out: 512 tokens / 5.12 s
    assert records[0]["samples_tok_s"] == [100.0, 100.0]
    assert records[1]["test"] == "pg"
    assert records[1]["samples_tok_s"] == [80.0]
    assert records[0]["gpu_info"] is None and records[0]["model_size_bytes"] is None
    trials = llama_bench_trials(records)
    assert [(t["test"], t["n_depth"], t["duration_s"]) for t in trials] == [
        ("pp", 4096, 5.12),
        ("pp", 4096, 5.12),
        ("pg", 0, 1.0),
    ]


def test_llama_bench_trials_from_the_sample():
    trials = llama_bench_trials(parse_llama_bench(BENCH_JSON))
    assert len(trials) == 5
    assert [t["duration_s"] for t in trials] == [ns / 1e9 for ns in SAMPLE_NS]
    assert [t["tok_s"] for t in trials] == SAMPLE_TS
    assert {(t["test"], t["n_prompt"], t["n_gen"], t["n_depth"]) for t in trials} == {("pp", 512, 0, 0)}
    # llama-bench rounds samples_ts to 6 significant digits; they agree with samples_ns to that precision
    for t in trials:
        assert t["tok_s"] == pytest.approx(512 / t["duration_s"], rel=5e-6)


def test_llama_bench_truncated_array_still_yields_whole_records():
    record = json.loads(BENCH_JSON)[0]
    text = "[\n  " + json.dumps(record) + ",\n  " + json.dumps(record)[:200]  # killed mid-record
    records = parse_llama_bench(text)
    assert len(records) == 1
    assert_sample_record(records[0])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "error: failed to load model '/data/local/tmp/m.gguf'\n",
        '[1717171717] no records\n{"hello": 1}\n',
        '{"n_prompt": 512, "n_gen": 0, "avg_ts": 1.0, "samples_ns": ["x"]}\n',
    ],
)
def test_llama_bench_nothing_parses(text):
    with pytest.raises(LlamaBenchOutputError):
        parse_llama_bench(text)
    assert issubclass(LlamaBenchOutputError, ValueError)


def test_llama_bench_command():
    assert llama_bench_command("/data/local/tmp/llama-bench", "/data/local/tmp/m.gguf", 4, 512, 128, 5) == [
        "/data/local/tmp/llama-bench",
        "-m",
        "/data/local/tmp/m.gguf",
        "-t",
        "4",
        "-p",
        "512",
        "-n",
        "128",
        "-r",
        "5",
        "-o",
        "jsonl",
    ]
    cmd = llama_bench_command("llama-bench", "m.gguf", 8, 0, 64, 3, extra=["-d", "4096", "-fa", "1"])
    assert cmd[-4:] == ["-d", "4096", "-fa", "1"]
    assert cmd[:13] == ["llama-bench", "-m", "m.gguf", "-t", "8", "-p", "0", "-n", "64", "-r", "3", "-o", "jsonl"]
