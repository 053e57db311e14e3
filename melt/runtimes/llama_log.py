"""What llama.cpp says it resolved, read from libllama's own log lines: the text llama-cpp-python's log
callback receives (runtime llama_cpp), `llama-bench -v`'s stderr or llama-completion's log (llama_cpp_cli).
A line may carry any prefix (llama-completion's "0.00.027.542 I ", ANSI colour); only the message is read.
Standard library only.

Flash attention (src/llama-context.cpp and src/llama.cpp, ggml-org/llama.cpp):

- what the context was asked, printed by its constructor before anything is resolved:
    "llama_new_context_with_model: flash_attn = 0|1"        PR 5021 (April 2024) to the llama_context
                                                             refactor (March 2025);
    "llama_context: flash_attn = 0|1"                        to the flash-attention-auto change (August 2025);
    "llama_context: flash_attn = auto|enabled|disabled"      after it: llama_flash_attn_type_name() of the type
                                                             as llama_init_from_model left it (it forces Grok off,
                                                             and auto on for a quantized V cache or tensor split);
- how auto was resolved, once the scheduler has reserved a graph and seen where the attention op landed:
    "<fn>: Flash Attention was auto, set to enabled|disabled"    August 2025 on (fn llama_context, later
                                                                 sched_reserve); enabled is INFO, disabled WARN;
    "<fn>: Flash Attention enabled"
    "<fn>: Flash Attention not supported, set to disabled"       resolve_fused_ops, in llama.cpp 0c1e570 (the
                                                                 build llama-cpp-python 0.3.36 vendors).
  An explicit enabled / disabled is not resolved again: it is what runs.

Model loading (src/llama-model.cpp): "load_tensors: offloaded N/M layers to GPU" (only in builds with GPU
offload) and "load_tensors: loading model tensors, this can take a while... (load_mode = mmap|none|...)"
(builds with llama_load_mode; load_mode auto is printed as what it resolved to).

llama-cli / llama-completion (common's log, shown at their default verbosity): "system_info: n_threads = T / N
| ..." (examples/main, 2023 on), "system_info: n_threads = T (n_threads_batch = B) / N | ..." (common, when the
batch count is set apart) and "generate: n_ctx = C, n_batch = B, n_predict = ..., n_keep = ..."
(examples/main then tools/completion).
"""

from __future__ import annotations

import re

__all__ = [
    "flash_attn_contexts",
    "flash_attn_lines",
    "flash_attn_resolved",
    "gpu_layers_offloaded",
    "load_mode",
    "tool_settings",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ASKED = re.compile(r"\b(?:llama_context|llama_new_context_with_model):\s+flash_attn\s*=\s*(?P<value>\S*)")
_WAS_AUTO = re.compile(r"\bFlash Attention was auto, set to (?P<value>\w+)")
_PROBED = re.compile(r"\bFlash Attention (?P<value>enabled|not supported, set to disabled)\s*$")
_ASKED_VALUES = {"auto": "auto", "enabled": "on", "1": "on", "disabled": "off", "0": "off"}
_RESOLVED_VALUES = {"enabled": "on", "disabled": "off", "not supported, set to disabled": "off"}
_OFFLOADED = re.compile(r"\boffloaded (?P<n>\d+)/(?P<of>\d+) layers to GPU")
_LOAD_MODE = re.compile(r"\(load_mode = (?P<mode>[\w+]+)\)")
_SYSTEM_INFO = re.compile(
    r"\bsystem_info: n_threads = (?P<threads>\d+)(?: \(n_threads_batch = (?P<threads_batch>\d+)\))?"
)
_GENERATE = re.compile(r"\bgenerate: n_ctx = (?P<n_ctx>\d+), n_batch = (?P<n_batch>-?\d+)")


def _lines(text: str):
    for line in _ANSI.sub("", text).splitlines():
        yield line.rstrip()


def flash_attn_contexts(text: str) -> list[dict]:
    """One entry per llama.cpp context the log shows being made (llama-bench makes one per test), in order:
    {"asked": "auto"|"on"|"off"|None, "resolved": "on"|"off"|None, "lines": [the lines read],
    "unread": [lines about flash attention whose value is not one of the forms in the module docstring]}.
    resolved is the asked value when that was on or off, the resolution line's when it was auto, None when
    an auto context never said (or a value could not be read). A resolution line with no constructor line
    before it (a log that starts late) makes an entry of its own with asked None."""
    contexts: list[dict] = []
    for line in _lines(text):
        asked = _ASKED.search(line)
        if asked:
            value = _ASKED_VALUES.get(asked["value"])
            contexts.append({"asked": value, "resolved": value if value in ("on", "off") else None,
                             "lines": [line.strip()], "unread": [] if value else [line.strip()]})  # fmt: skip
            continue
        resolved = _WAS_AUTO.search(line) or _PROBED.search(line)
        if not resolved:
            continue
        if not contexts or contexts[-1]["asked"] != "auto" or contexts[-1]["resolved"] is not None:
            contexts.append({"asked": None, "resolved": None, "lines": [], "unread": []})
        ctx = contexts[-1]
        ctx["lines"].append(line.strip())
        value = _RESOLVED_VALUES.get(resolved["value"])
        if value is None:
            ctx["unread"].append(line.strip())
        else:
            ctx["resolved"] = value
    return contexts


def flash_attn_lines(text: str) -> list[str]:
    """The lines flash_attn_contexts read (what llama.cpp said about flash attention), in order."""
    return [line for c in flash_attn_contexts(text) for line in c["lines"]]


def flash_attn_resolved(text: str) -> tuple[str | None, str | None]:
    """(resolved, why): "on" or "off" as every context in the log ran it, with why None; or None and why
    not (no context line, an auto never resolved, a value not understood, contexts that differ)."""
    contexts = flash_attn_contexts(text)
    if not contexts:
        return None, "llama.cpp's log has no flash_attn line"
    unread = [line for c in contexts for line in c["unread"]]
    if unread:
        return None, f"llama.cpp's flash attention line is not a known form: {unread[0]!r}"
    values = {c["resolved"] for c in contexts}
    if None in values:
        return None, "llama.cpp's log says flash_attn = auto and never how it resolved it"
    if len(values) > 1:
        return None, f"llama.cpp's contexts resolved flash attention differently: {', '.join(sorted(values))}"
    return values.pop(), None


def gpu_layers_offloaded(text: str) -> int | None:
    """N of the last "offloaded N/M layers to GPU" line; None when there is none."""
    found = [int(m["n"]) for line in _lines(text) for m in [_OFFLOADED.search(line)] if m]
    return found[-1] if found else None


def load_mode(text: str) -> str | None:
    """The last "(load_mode = X)" of the log (mmap, none, mlock, mmap+mlock, dio); None when there is none."""
    found = [m["mode"] for line in _lines(text) for m in [_LOAD_MODE.search(line)] if m]
    return found[-1] if found else None


def tool_settings(text: str) -> dict[str, int]:
    """What a llama-cli / llama-completion log says it ran with, by recipe name: threads, threads_batch (threads
    when the line has no batch count: common then uses the same), n_ctx, n_batch; the last such lines, and only
    the keys found."""
    out: dict[str, int] = {}
    for line in _lines(text):
        m = _SYSTEM_INFO.search(line)
        if m:
            out["threads"] = int(m["threads"])
            out["threads_batch"] = int(m["threads_batch"] or m["threads"])
        m = _GENERATE.search(line)
        if m:
            out["n_ctx"], out["n_batch"] = int(m["n_ctx"]), int(m["n_batch"])
    return out
