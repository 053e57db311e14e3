"""llama.cpp through llama-cpp-python's low-level API.

The high-level `create_completion(stream=True)` loop samples and detokenises in Python for every
token and runs ~11% below llama.cpp's own llama-bench. Here a trial is: tokenise, prefill in
n_batch chunks, then n_gen greedy tokens (argmax over the logits, end-of-sequence ignored) with one
llama_decode each, stamping every token on the monotonic clock. Nothing else runs per token.

Parameters a recipe leaves out take llama.cpp's own defaults, not llama-cpp-python's (its `Llama()` has
defaults of its own, n_batch 512 and flash attention off among them, and cannot ask for flash attention
auto), so the model and context are made here from the C library's llama_model_default_params() and
llama_context_default_params(), read at run time from the build in use (never restated here), with only
what the case sets written over them. Four take the rule of llama.cpp's tools instead of the C default:
threads (the C default is a placeholder, 4, "TODO: better default") is common_cpu_get_num_math()
(melt.runtimes.cpu_math), as llama-bench's -t and llama-cli's; threads_batch is threads, as both tools
do. n_ctx (C default 512, which a longer prompt does not fit) is llama-bench's: the longest prompt +
n_gen. swa_full (the C default keeps the sliding-window layers' KV cache at full context size, true;
common_params and llama-bench's to_llama_cparams set false, a cache of the window plus one ubatch) is
false, so a sliding-window model (Gemma 3) runs as llama-bench and llama-cli run it; the outputs are the
same, the cache is smaller and, here, Gemma 3 270M decodes ~5% faster. melt turns no_perf off (the
C default is on) to read llama.cpp's own per-trial counters; that observes, it changes no computation.
What llama.cpp resolved is recorded in load()'s effective_params: from its getters where it has them
(llama_n_ctx, llama_n_threads, ...), else from its log lines (melt.runtimes.llama_log: flash attention
auto, GPU layers offloaded, load mode).
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from importlib import resources

from melt.runtimes.cpu_math import math_cpus
from melt.runtimes.llama_log import flash_attn_lines, flash_attn_resolved, gpu_layers_offloaded, load_mode

PROMPT_TEXT = "prompt_text.txt"
KV_TYPES = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}
# the recipe's llama.cpp params (melt.recipe.LlamaCppParams): those a case leaves out are llama.cpp's defaults
PARAMS = ("threads", "threads_batch", "n_ctx", "n_batch", "n_ubatch", "n_gpu_layers", "flash_attn",
          "cache_type_k", "cache_type_v", "use_mmap", "swa_full")  # fmt: skip
FLASH_ATTN_TYPES = {"auto": -1, "off": 0, "on": 1}  # enum llama_flash_attn_type (include/llama.h, August 2025 on)
# a recipe's n_gpu_layers -1 (all) is passed as INT32_MAX, as llama-cpp-python does: builds before 2025 offload
# no layer for a negative count (llm_load_tensors: i_gpu_start = n_layer - n_gpu_layers)
ALL_LAYERS = 0x7FFFFFFF
LOAD_MODE_MMAP = {-1: "auto", 0: False, 1: True, 2: False, 3: True, 4: False}  # enum llama_load_mode -> use_mmap


def flash_attn_choice(value) -> str | None:
    """A recipe's flash_attn as "on", "off" or "auto" (true / false are on / off); None when it is not set."""
    if value is None:
        return None
    if value is True or value == "on":
        return "on"
    if value is False or value == "off":
        return "off"
    if value == "auto":
        return "auto"
    raise ValueError(f"flash_attn {value!r}: not auto, on, off, true or false")


def info() -> dict:
    import llama_cpp

    return {
        "name": "llama_cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }


def prompt_text() -> str:
    """A public-domain text (see the file's header) used to build prompts of exactly N tokens."""
    return resources.files("melt.runtimes").joinpath(PROMPT_TEXT).read_text(encoding="utf-8")


_REGISTERED_LOG_CALLBACKS: list = []  # the callback llama.cpp holds now, kept alive for as long as it may call
_BACKEND_READY: list = []  # llama_backend_init has run in this process


class LlamaLog:
    """Keeps llama.cpp's warnings and errors (they say why a context cannot be created, for
    example), and while `loading` is true its info lines too (what it resolved: melt.runtimes.llama_log).
    llama-cpp-python 0.3.x maps ggml's log levels with an outdated table and drops errors when
    verbose=False; these are ggml's current values (ggml.h, enum ggml_log_level)."""

    INFO, WARN, ERROR, CONT = 2, 3, 4, 5

    def __init__(self, lib):
        self.messages: list[str] = []
        self.loading = True
        self._load_text: list[str] = []
        self._last = 0

        @lib.llama_log_callback
        def _callback(level, text, user_data):
            kept = level if level != self.CONT else self._last
            if kept in (self.WARN, self.ERROR):
                self.messages.append(text.decode("utf-8", errors="replace").strip())
            if self.loading and kept in (self.INFO, self.WARN, self.ERROR):
                self._load_text.append(text.decode("utf-8", errors="replace"))
            if level != self.CONT:
                self._last = level

        # llama.cpp keeps the pointer until another callback replaces it, so the ctypes callback must
        # outlive this object: a freed one crashes the next model load in the same process
        _REGISTERED_LOG_CALLBACKS[:] = [_callback]
        lib.llama_log_set(_callback, ctypes.c_void_p(0))

    def load_text(self) -> str:
        """llama.cpp's info, warning and error text while loading, as it wrote it."""
        return "".join(self._load_text)

    def why(self) -> str:
        said = [m for m in self.messages if m][-3:]
        return f"; llama.cpp said: {' | '.join(said)}" if said else ""


def _fields(struct) -> set[str]:
    return {f[0] for f in type(struct)._fields_}


def _kv_name(ggml_type: int) -> str:
    return next((k for k, v in KV_TYPES.items() if v == ggml_type), f"ggml type {ggml_type}")


def _metadata(lib, model) -> dict[str, str]:
    """The GGUF key/values as llama.cpp reads them (llama_model_meta_*), tokenizer arrays left out."""
    out = {}
    buf = ctypes.create_string_buffer(1024)
    for i in range(lib.llama_model_meta_count(model)):
        pair = []
        for get in (lib.llama_model_meta_key_by_index, lib.llama_model_meta_val_str_by_index):
            n = get(model, i, buf, len(buf))
            if n >= len(buf):
                buf = ctypes.create_string_buffer(n + 1)
                n = get(model, i, buf, len(buf))
            pair.append(buf.value.decode("utf-8", errors="replace") if n >= 0 else "")
        if not pair[0].startswith("tokenizer."):
            out[pair[0]] = pair[1]
    return out


class Runner:
    no_perf = False  # llama.cpp's per-trial counters stay on: melt reads them (see the module docstring)

    def __init__(self, case: dict, case_dir: str):
        self.model_path = case["model_path"]
        self.workload = case["workload"]
        self.params = case["params"]
        self.case_dir = case_dir
        self.model = self.ctx = None

    # -- load -------------------------------------------------------------------------------
    def _model_params(self, lib) -> tuple:
        """llama_model_default_params() with the case's n_gpu_layers and use_mmap written over it, and what
        that asks: {"n_gpu_layers": layers (-1 all), "use_mmap": true, false or "auto" (load_mode auto)}.
        Older builds have a use_mmap bool instead of load_mode."""
        p = self.params
        mp = lib.llama_model_default_params()
        has_load_mode = "load_mode" in _fields(mp)
        if "n_gpu_layers" in p:
            mp.n_gpu_layers = ALL_LAYERS if p["n_gpu_layers"] == -1 else p["n_gpu_layers"]
        if "use_mmap" in p:
            if has_load_mode:
                mp.load_mode = lib.LLAMA_LOAD_MODE_MMAP if p["use_mmap"] else lib.LLAMA_LOAD_MODE_NONE
            else:
                mp.use_mmap = p["use_mmap"]
        return mp, {
            "n_gpu_layers": p.get("n_gpu_layers", mp.n_gpu_layers),
            "use_mmap": LOAD_MODE_MMAP.get(mp.load_mode, f"load_mode {mp.load_mode}")
            if has_load_mode
            else bool(mp.use_mmap),
        }

    def _context_params(self, lib, n_ctx_needed: int) -> tuple:
        """llama_context_default_params() with the case's params written over it (threads, threads_batch and
        n_ctx by the rules in the module docstring), and what that asks, by recipe name. Builds before the
        flash-attention-auto change (August 2025) have a flash_attn bool, off by default, and no auto: there
        auto leaves that default."""
        p = self.params
        cp = lib.llama_context_default_params()
        fields = _fields(cp)
        cp.n_ctx = p.get("n_ctx", n_ctx_needed)
        cp.n_threads = p["threads"] if "threads" in p else math_cpus()
        cp.n_threads_batch = p.get("threads_batch", cp.n_threads)
        for key in ("n_batch", "n_ubatch"):
            if key in p:
                setattr(cp, key, p[key])
        for key, field in (("cache_type_k", "type_k"), ("cache_type_v", "type_v")):
            if key in p:
                setattr(cp, field, KV_TYPES[p[key]])
        fa = flash_attn_choice(p.get("flash_attn"))
        if "flash_attn_type" in fields:
            if fa is not None:
                cp.flash_attn_type = FLASH_ATTN_TYPES[fa]
            asked_fa = {v: k for k, v in FLASH_ATTN_TYPES.items()}.get(cp.flash_attn_type, f"{cp.flash_attn_type}")
        else:
            if fa in ("on", "off"):
                cp.flash_attn = fa == "on"
            asked_fa = "on" if cp.flash_attn else "off"
        if "no_perf" in fields:
            cp.no_perf = self.no_perf
        if "swa_full" in fields:  # llama.cpp's tools' default, not the C one (module docstring)
            cp.swa_full = p.get("swa_full", False)
        return cp, {
            "threads": cp.n_threads,
            "threads_batch": cp.n_threads_batch,
            "n_ctx": cp.n_ctx,
            "n_batch": cp.n_batch,
            "n_ubatch": cp.n_ubatch,
            "flash_attn": asked_fa,
            "cache_type_k": _kv_name(cp.type_k),
            "cache_type_v": _kv_name(cp.type_v),
            # a build from before sliding-window caches (May 2025) has no such choice
            "swa_full": bool(cp.swa_full) if "swa_full" in fields else None,
        }

    def load(self) -> dict:
        import llama_cpp

        lib = self.lib = llama_cpp
        self.log = LlamaLog(lib)
        if not _BACKEND_READY:
            lib.llama_backend_init()
            _BACKEND_READY.append(True)
        mparams, asked = self._model_params(lib)
        self.n_gen = self.workload["n_gen"]
        want = self.workload.get("prompt_tokens")
        t0 = time.monotonic_ns()
        self.model = lib.llama_model_load_from_file(self.model_path.encode("utf-8"), mparams)
        if not self.model:
            raise RuntimeError(f"Failed to load model from file {self.model_path}{self.log.why()}")
        self.vocab = lib.llama_model_get_vocab(self.model)
        if want is None:  # real prompts: the longest sets n_ctx when the case does not
            self._read_prompts()
            want = max(len(self._tokenize(text)) for text in self.prompts)
        cparams, asked_ctx = self._context_params(lib, want + self.n_gen)
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise RuntimeError(f"Failed to create llama_context{self.log.why()}")
        t1 = time.monotonic_ns()
        self.log.loading = False
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx = lib.llama_n_ctx(self.ctx)
        self.n_batch = lib.llama_n_batch(self.ctx)
        if "prompt_tokens" in self.workload:
            self._synthetic_prompt(self.workload["prompt_tokens"])
        desc = ctypes.create_string_buffer(256)
        lib.llama_model_desc(self.model, desc, len(desc))
        return {
            "load_s": (t1 - t0) / 1e9,
            "t_start_ns": t0,
            "t_end_ns": t1,
            "effective_params": self._effective({**asked_ctx, **asked}),
            "model": {
                "desc": desc.value.decode(errors="replace"),
                "n_params": lib.llama_model_n_params(self.model),
                "size_bytes": lib.llama_model_size(self.model),
                "n_vocab": self.n_vocab,
                "metadata": _metadata(lib, self.model),
            },
            "prompts": self.prompt_info,
            "llama_cpp_warnings": list(self.log.messages),
        }

    def _effective(self, asked: dict) -> dict:
        """What llama.cpp runs with, by recipe name: its getters' values, else what its load log says
        (melt.runtimes.llama_log), else what was asked where llama.cpp does not change it (cache types, an
        explicit mmap). Also: asked (what melt passed, llama.cpp's defaults included), defaults (the params
        the case left to llama.cpp), llama_cpp_said {"flash_attn": the log lines read}, and unknown
        {param: why} for each value llama.cpp did not say (None)."""
        lib, ctx, text = self.lib, self.ctx, self.log.load_text()
        unknown = {}
        flash_attn, why = flash_attn_resolved(text)
        if flash_attn is None and asked["flash_attn"] in ("on", "off") and "no flash_attn line" in why:
            flash_attn = asked["flash_attn"]  # an explicit choice llama.cpp did not print: it is not changed
        elif flash_attn is None:
            unknown["flash_attn"] = why
        gpu_layers = gpu_layers_offloaded(text) if lib.llama_supports_gpu_offload() else 0
        if gpu_layers is None:
            unknown["n_gpu_layers"] = "llama.cpp's log has no 'offloaded N/M layers to GPU' line"
        mode = load_mode(text)
        use_mmap = mode.startswith("mmap") if mode else asked["use_mmap"]
        if asked["swa_full"] is None:
            unknown["swa_full"] = "this llama.cpp has no swa_full context parameter (before May 2025)"
        if not isinstance(use_mmap, bool):
            use_mmap = None
            unknown["use_mmap"] = "llama.cpp's log does not say which load mode auto became"
        effective = {
            "threads": lib.llama_n_threads(ctx),
            "threads_batch": lib.llama_n_threads_batch(ctx),
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_ubatch": lib.llama_n_ubatch(ctx),
            "n_gpu_layers": gpu_layers,
            "flash_attn": flash_attn,
            "cache_type_k": asked["cache_type_k"],
            "cache_type_v": asked["cache_type_v"],
            "use_mmap": use_mmap,
            "swa_full": asked["swa_full"],
            "asked": {k: asked[k] for k in PARAMS},
            "defaults": [k for k in PARAMS if k not in self.params],
            "llama_cpp_said": {"flash_attn": flash_attn_lines(text)},
        }
        if unknown:
            effective["unknown"] = unknown
        return effective

    def _tokenize(self, text: str) -> list[int]:
        """llama_tokenize with BOS (add_special) and no special-token parsing, as Llama.tokenize did."""
        lib, data = self.lib, text.encode("utf-8")
        n_max = len(data) + 8
        for _ in range(2):
            buf = (lib.llama_token * n_max)()
            n = lib.llama_tokenize(self.vocab, data, len(data), buf, n_max, True, False)
            if n >= 0:
                return buf[:n]
            n_max = -n  # too small: llama.cpp says how many it needs
        raise RuntimeError(f"llama_tokenize failed on a text of {len(data)} bytes ({n})")

    def _synthetic_prompt(self, n: int) -> None:
        """The shortest prefix of the shipped text giving >= N tokens (the text is repeated when N is longer
        than it)."""
        text = prompt_text()
        while len(self._tokenize(text)) < n:
            text = text + "\n\n" + text
        lo, hi = 1, len(text)
        while lo < hi:  # binary search on characters; tokenisation is monotone enough for this
            mid = (lo + hi) // 2
            if len(self._tokenize(text[:mid])) >= n:
                hi = mid
            else:
                lo = mid + 1
        self.prompts = [text[:lo]]
        self.prompt_info = {"kind": "synthetic", "prompt_tokens": n, "chars": lo, "text_file": PROMPT_TEXT}

    def _read_prompts(self) -> None:
        """Real prompts: the JSONL file's, used in turn, one per trial."""
        with open(os.path.join(self.case_dir, "prompts.jsonl"), encoding="utf-8") as f:
            self.prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
        self.prompt_info = {"kind": "jsonl", "count": len(self.prompts)}

    # -- one trial --------------------------------------------------------------------------
    def _argmax(self) -> int:
        import numpy as np  # llama-cpp-python depends on numpy, so it is there wherever this runs

        logits = self.lib.llama_get_logits_ith(self.ctx, -1)
        return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())

    def trial(self, index: int) -> dict:
        lib, ctx = self.lib, self.ctx
        text = self.prompts[index % len(self.prompts)]
        want = self.workload.get("prompt_tokens")
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        if hasattr(lib, "llama_perf_context_reset"):
            lib.llama_perf_context_reset(ctx)

        t_start = time.monotonic_ns()
        tokens = self._tokenize(text)
        if want is not None:
            tokens = tokens[:want]
        n_prompt = len(tokens)
        if n_prompt + self.n_gen > self.n_ctx:
            raise ValueError(
                f"prompt {index % len(self.prompts)} has {n_prompt} tokens; "
                f"with n_gen {self.n_gen} it exceeds n_ctx {self.n_ctx}"
            )
        chunks = [
            (lib.llama_token * len(part))(*part)
            for part in (tokens[i : i + self.n_batch] for i in range(0, n_prompt, self.n_batch))
        ]
        t_tokenized = time.monotonic_ns()
        for chunk in chunks:
            if lib.llama_decode(ctx, lib.llama_batch_get_one(chunk, len(chunk))) != 0:
                raise RuntimeError(f"llama_decode failed during prefill{self.log.why()}")
        lib.llama_synchronize(ctx)
        t_prefill_end = time.monotonic_ns()

        one = (lib.llama_token * 1)()
        batch = lib.llama_batch_get_one(one, 1)  # reused: it points at `one`
        token = self._argmax()
        token_ns = [time.monotonic_ns()]
        generated = [token]
        for _ in range(self.n_gen - 1):
            one[0] = token
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError(f"llama_decode failed at generated token {len(generated)}{self.log.why()}")
            token = self._argmax()
            token_ns.append(time.monotonic_ns())
            generated.append(token)
        return {
            "duration_s": (token_ns[-1] - t_start) / 1e9,
            "n_prompt": n_prompt,
            "n_gen": len(generated),
            "t_start_ns": t_start,
            "t_tokenized_ns": t_tokenized,
            "t_prefill_end_ns": t_prefill_end,
            "token_ns": token_ns,
            "tokens": generated,
            **self._llama_perf(),
        }

    def quality(self, spec: dict) -> dict:
        """The case's quality block (melt.recipe.LlamaCppQuality, as case.json holds it) measured on the loaded
        model, after the speed trials: {"perplexity": melt.runtimes.llama_quality.perplexity()'s figures and the
        text's sha256, "choices": multiple_choice()'s, "outputs": greedy_outputs()', each or {"error": why}}. The
        text, the tasks and the prompts are the case folder's perplexity.txt, choices.jsonl and outputs.jsonl (the
        host puts them there).
        A quality figure that cannot be measured leaves the speed figures standing: its reason is kept."""
        import hashlib

        import numpy as np

        from melt.runtimes.llama_quality import KLD_TOP_K, greedy_outputs, multiple_choice, perplexity

        out = {}
        if "perplexity" in spec:
            p = spec["perplexity"]
            base = None
            if spec.get("reference"):  # KL divergence from the reference's kept rows (kld_base.npz, from the host)
                try:
                    if spec.get("reference_missing"):
                        raise ValueError(spec["reference_missing"])
                    with np.load(os.path.join(self.case_dir, "kld_base.npz")) as f:
                        base = {k: f[k] for k in f.files}
                except (OSError, ValueError) as e:
                    out["kld"] = {"error": f"no reference to compare with: {e}"}
            try:
                with open(os.path.join(self.case_dir, "perplexity.txt"), encoding="utf-8") as f:
                    text = f.read()
                keep = KLD_TOP_K if spec.get("kld_base") else None
                measured = perplexity(self, text, p.get("n_ctx", 512), p.get("max_chunks"), keep, base)
                kept = measured.pop("kld_base", None)
                if kept is not None:  # the host hands it to the cases that name this model as their reference
                    np.savez_compressed(os.path.join(self.case_dir, "kld_base.npz"), **kept)
                if "kld" in measured:
                    out["kld"] = measured.pop("kld")
                out["perplexity"] = {**measured, "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
            except (OSError, ValueError, RuntimeError) as e:
                out["perplexity"] = {"error": f"{type(e).__name__}: {e}"}
                if base is not None:
                    out["kld"] = {"error": f"{type(e).__name__}: {e}"}
        if "choices" in spec:
            try:
                with open(os.path.join(self.case_dir, "choices.jsonl"), encoding="utf-8") as f:
                    tasks = [json.loads(line) for line in f if line.strip()]
                out["choices"] = multiple_choice(self, tasks, spec["choices"].get("limit"))
            except (OSError, ValueError, RuntimeError) as e:
                out["choices"] = {"error": f"{type(e).__name__}: {e}"}
        if "outputs" in spec:
            try:
                with open(os.path.join(self.case_dir, "outputs.jsonl"), encoding="utf-8") as f:
                    prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
                out["outputs"] = greedy_outputs(self, prompts, spec["outputs"].get("n_gen", 64))
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                out["outputs"] = {"error": f"{type(e).__name__}: {e}"}
        return out

    def _llama_perf(self) -> dict:
        """llama.cpp's own counters for the trial, as it reports them (raw; analysis.metrics.llama_perf_rates
        decides what they are worth: zeros from a context with no_perf on give no figure). A llama-cpp-python
        without llama_perf_context (before llama.cpp's perf API, September 2024) gives llama_perf None and
        the reason."""
        if not hasattr(self.lib, "llama_perf_context"):
            return {"llama_perf": None, "llama_perf_missing": "this llama-cpp-python has no llama_perf_context"}
        perf = self.lib.llama_perf_context(self.ctx)
        return {
            "llama_perf": {
                "t_p_eval_ms": perf.t_p_eval_ms,
                "t_eval_ms": perf.t_eval_ms,
                "n_p_eval": perf.n_p_eval,
                "n_eval": perf.n_eval,
            }
        }

    def close(self) -> dict:
        if self.ctx:
            self.lib.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None
        return {}
