"""How a llama.cpp binary takes -fa, read from its own --help; what llama-bench says it ran with.

Old llama-bench: the recorded help of commit 20e30b25 (tests/lab/llama_cpp). Current llama-bench and
llama-completion: the real binaries built from the llama.cpp llama-cpp-python vendors. The other forms are the
help lines llama.cpp printed in each era (see melt/runtimes/llama_cpp_cli_output.py), with their padding.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from melt.runtimes.llama_cpp_cli_output import (
    FlashAttnUnsupported,
    LlamaBenchOutputError,
    flash_attn_args,
    flash_attn_form,
    reported_flash_attn,
)

LAB = Path(__file__).resolve().parent / "lab" / "llama_cpp"
OLD_BENCH_HELP = (LAB / "llama-bench-help-20e30b25.txt").read_text()


def test_recorded_old_llama_bench_takes_0_or_1():
    form = flash_attn_form(OLD_BENCH_HELP)
    assert form == {"form": "0|1", "line": "-fa, --flash-attn <0|1>                   (default: 0)"}
    assert flash_attn_args(form, True) == ["-fa", "1"] and flash_attn_args(form, False) == ["-fa", "0"]


@pytest.mark.parametrize("tool", ["llama-bench", "llama-completion"])
def test_real_current_tools_take_on_or_off(tool, llama_bench_bin):
    done = subprocess.run([str(llama_bench_bin.with_name(tool)), "--help"], capture_output=True, text=True)
    form = flash_attn_form(done.stdout + done.stderr)
    assert form["form"] == "on|off" and "--flash-attn" in form["line"]
    assert flash_attn_args(form, True) == ["-fa", "on"] and flash_attn_args(form, False) == ["-fa", "off"]


# (a -fa help line as llama.cpp printed it in some era, the form it means)
LINES = [
    ("  -fa, --flash-attn <0|1>             (default: 0)", "0|1"),  # llama-bench, 2024
    ("  -fa, --flash-attn <0|1>                   (default: 0)", "0|1"),  # llama-bench, spring 2025
    ("  -fa, --flash-attn <0|1>                     (default: 0)", "0|1"),  # llama-bench, summer 2025
    ("  -fa, --flash-attn <on|off|auto>                   (default: auto)", "on|off"),  # llama-bench, after
    ("  -fa,   --flash-attn             enable Flash Attention (default: disabled)", "flag"),  # gpt_params, 2024
    ("  -fa, --flash-attn         enable Flash Attention (default: disabled)", "flag"),  # server usage, 2024
    ("-fa,   --flash-attn                     enable Flash Attention (default: disabled)", "flag"),  # common_arg
    ("-fa,   --flash-attn FA                  set Flash Attention use ('on', 'off', or 'auto', default: 'auto')", "on|off"),  # noqa: E501
    ("-fa,   --flash-attn [on|off|auto]       set Flash Attention use ('on', 'off', or 'auto', default: 'auto')", "on|off"),  # noqa: E501
]  # fmt: skip
ARGS = {
    "0|1": {"on": ["-fa", "1"], "off": ["-fa", "0"]},
    "on|off": {"on": ["-fa", "on"], "off": ["-fa", "off"]},
    "flag": {"on": ["-fa"], "off": []},
}


@pytest.mark.parametrize("line, kind", LINES)
@pytest.mark.parametrize("around", ["alone", "in a help text"])
def test_each_era_s_help_line(line, kind, around):
    text = line if around == "alone" else f"usage: tool [options]\n  -t, --threads N  threads\n{line}\n  -v  verbose\n"
    form = flash_attn_form(text)
    assert form == {"form": kind, "line": line.strip()}
    for asked, as_bool in (("on", True), ("off", False)):
        assert flash_attn_args(form, asked) == flash_attn_args(form, as_bool) == ARGS[kind][asked]
    # auto is no -fa at all in every form: the tool's own default (auto where it has it, off before)
    assert flash_attn_args(form, "auto") == []


@pytest.mark.parametrize("asked", ["ON", "yes", 1, None])
def test_flash_attn_args_refuses_what_is_not_on_off_or_auto(asked):
    with pytest.raises(ValueError, match="not on, off or auto"):
        flash_attn_args({"form": "on|off"}, asked)


@pytest.mark.parametrize(
    "line",
    [
        "  -fa, --flash-attn <yes|no>                (default: no)",
        "  -fa, --flash-attn <n>                     (default: 0)",
        "-fa,   --flash-attn MODE                 flash attention mode",
        "-fa,   --flash-attn                     use the fast kernels",
    ],
)
def test_a_form_not_seen_yet_is_not_guessed(line):
    with pytest.raises(FlashAttnUnsupported, match="cannot tell"):
        flash_attn_form("usage\n" + line + "\n")


def test_a_build_without_flash_attention():
    form = flash_attn_form("usage: ./llama-bench [options]\n  -t, --threads <n>   (default: 4)\n")
    assert form == {"form": "none", "line": None}
    assert flash_attn_args(form, False) == [] and flash_attn_args(form, "auto") == []
    with pytest.raises(FlashAttnUnsupported, match="no -fa option"):
        flash_attn_args(form, True)


@pytest.mark.parametrize(
    "value, said",
    [(True, "on"), (False, "off"), (1, "on"), (0, "off"), (-1, "auto")],
)
def test_reported_flash_attn_old_bool_and_new_enum(value, said):
    assert reported_flash_attn({"n_prompt": 8, "flash_attn": value}) == said
    assert reported_flash_attn({"raw": {"flash_attn": value}, "test": "pp"}) == said


def test_reported_flash_attn_absent_or_odd():
    assert reported_flash_attn({"n_prompt": 8}) is None
    for odd in ("on", 2, None):
        with pytest.raises(LlamaBenchOutputError, match="flash_attn"):
            reported_flash_attn({"flash_attn": odd})
