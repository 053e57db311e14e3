"""Reading what llama.cpp resolved from its own log lines (melt.runtimes.llama_log), for every form its
source has printed (see the module docstring), generated with each prefix a tool puts before a message."""

from __future__ import annotations

import pytest

from melt.runtimes.llama_log import (
    flash_attn_contexts,
    flash_attn_lines,
    flash_attn_resolved,
    gpu_layers_offloaded,
    load_mode,
    tool_settings,
)

# how a line reaches melt: llama-cpp-python's callback and llama-bench -v (bare), llama-completion's common log
# (timestamp and level letter), a terminal-coloured one
PREFIXES = {"bare": "", "common": "0.00.027.542 I ", "ansi": "\x1b[32m"}

# (the constructor's line, the value it means), per era of src/llama-context.cpp
ASKED = {
    "2024 bool": ("llama_new_context_with_model: flash_attn = {v}", {"1": "on", "0": "off"}),
    "2025 bool": ("llama_context: flash_attn    = {v}", {"1": "on", "0": "off"}),
    "auto era": ("llama_context: flash_attn            = {v}", {"enabled": "on", "disabled": "off", "auto": "auto"}),
}
# how auto was resolved: (line, resolved)
RESOLVED = {
    "was auto, llama_context": [("llama_context: Flash Attention was auto, set to enabled", "on"),
                                ("llama_context: Flash Attention was auto, set to disabled", "off")],
    "was auto, sched_reserve": [("sched_reserve: Flash Attention was auto, set to enabled", "on"),
                                ("sched_reserve: Flash Attention was auto, set to disabled", "off")],
    "fused-op probe": [("resolve_fused_ops: Flash Attention enabled", "on"),
                       ("resolve_fused_ops: Flash Attention not supported, set to disabled", "off")],
}  # fmt: skip
AROUND = "llama_context: n_ctx                 = 256\nllama_kv_cache: size =    0.12 MiB (   256 cells)\n"


def log(lines: list[str], prefix: str) -> str:
    body = "".join(f"{prefix}{line}\n" for line in lines)
    return f"{prefix}llama_model_loader: loaded meta data\n{AROUND}{body}{prefix}sched_reserve: graph nodes  = 68\n"


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("era", ASKED)
def test_an_explicit_choice_is_what_runs(era, prefix):
    form, values = ASKED[era]
    for raw, value in values.items():
        if value == "auto":
            continue
        text = log([form.format(v=raw)], PREFIXES[prefix])
        assert flash_attn_resolved(text) == (value, None)
        (ctx,) = flash_attn_contexts(text)
        assert ctx["asked"] == value and ctx["unread"] == [] and form.format(v=raw) in ctx["lines"][0]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("kind, line, value", [(k, line, v) for k, pairs in RESOLVED.items() for line, v in pairs])
def test_auto_is_read_from_its_resolution_line(kind, line, value, prefix):
    asked = ASKED["auto era"][0].format(v="auto")
    text = log([asked, "sched_reserve: reserving ...", line], PREFIXES[prefix])
    assert flash_attn_resolved(text) == (value, None)
    (ctx,) = flash_attn_contexts(text)
    assert ctx["asked"] == "auto" and ctx["resolved"] == value
    said = flash_attn_lines(text)  # as written (colour codes dropped), the tool's prefix kept
    assert len(said) == 2 and said[0].endswith(asked.strip()) and said[1].endswith(line)


def test_auto_never_resolved_is_unknown_with_why():
    text = log([ASKED["auto era"][0].format(v="auto")], "")
    resolved, why = flash_attn_resolved(text)
    assert resolved is None and "auto and never how it resolved" in why


def test_no_flash_attn_line_is_unknown_with_why():
    resolved, why = flash_attn_resolved(log([], ""))
    assert resolved is None and "no flash_attn line" in why


@pytest.mark.parametrize(
    "lines, found",
    [
        (["llama_context: flash_attn            = maybe"], "llama_context: flash_attn            = maybe"),
        (["llama_context: flash_attn            = auto", "sched_reserve: Flash Attention was auto, set to sideways"],
         "sched_reserve: Flash Attention was auto, set to sideways"),
    ],
)  # fmt: skip
def test_a_value_not_understood_is_named_not_guessed(lines, found):
    resolved, why = flash_attn_resolved(log(lines, ""))
    assert resolved is None and "not a known form" in why and found in why


def test_each_context_is_read_and_they_must_agree():
    """llama-bench makes one context per test; a log that starts late has a resolution line alone."""
    first = ["llama_context: flash_attn            = auto", "resolve_fused_ops: Flash Attention enabled"]
    same = log(first + first, "")
    assert [c["resolved"] for c in flash_attn_contexts(same)] == ["on", "on"]
    assert flash_attn_resolved(same) == ("on", None)
    differ = log(first + ["llama_context: flash_attn            = disabled"], "")
    resolved, why = flash_attn_resolved(differ)
    assert resolved is None and "differently: off, on" in why
    late = log(["sched_reserve: Flash Attention was auto, set to disabled"], "")
    assert flash_attn_contexts(late)[0]["asked"] is None and flash_attn_resolved(late) == ("off", None)


def test_other_flash_attention_lines_are_not_taken_for_a_resolution():
    text = log(
        ["llama_context: flash_attn            = enabled",
         "sched_reserve: layer 3 is assigned to device CUDA0 but the Flash Attention tensor is assigned to device CPU",
         "llama_graph_n_input_tensors: input tensor 'attn_inp_kq_mask' is used by node 'node_21' (FLASH_ATTN_EXT)"],
        "",
    )  # fmt: skip
    assert flash_attn_resolved(text) == ("on", None) and len(flash_attn_lines(text)) == 1


@pytest.mark.parametrize("prefix", PREFIXES)
def test_model_loading_lines(prefix):
    p = PREFIXES[prefix]
    text = (
        f"{p}load_tensors: loading model tensors, this can take a while... (load_mode = mmap+mlock)\n"
        f"{p}load_tensors: offloading 32 repeating layers to GPU\n{p}load_tensors: offloaded 33/33 layers to GPU\n"
    )
    assert gpu_layers_offloaded(text) == 33 and load_mode(text) == "mmap+mlock"
    assert gpu_layers_offloaded(log([], p)) is None and load_mode(log([], p)) is None


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    "system_info, want",
    [
        ("system_info: n_threads = 4 / 8 | AVX = 1 | NEON = 0 |", {"threads": 4, "threads_batch": 4}),
        ("system_info: n_threads = 1 (n_threads_batch = 3) / 2 | CPU : SSE3 = 1 |", {"threads": 1, "threads_batch": 3}),
    ],
)  # fmt: skip
def test_tool_settings(system_info, want, prefix):
    p = PREFIXES[prefix]
    text = f"{p}{system_info}\n{p}generate: n_ctx = 4096, n_batch = 2048, n_predict = 4, n_keep = 1\n"
    assert tool_settings(text) == {**want, "n_ctx": 4096, "n_batch": 2048}
    assert tool_settings(f"{p}main: load the model\n") == {}
