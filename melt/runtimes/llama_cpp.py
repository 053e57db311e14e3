"""llama.cpp through llama-cpp-python's low-level API.

The high-level `create_completion(stream=True)` loop samples and detokenises in Python for every
token and runs ~11% below llama.cpp's own llama-bench. Here a trial is: tokenise, prefill in
n_batch chunks, then n_gen greedy tokens (argmax over the logits, end-of-sequence ignored) with one
llama_decode each, stamping every token on the monotonic clock. Nothing else runs per token.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from importlib import resources

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
DEFAULT_N_CTX = 2048  # the same default as melt.recipe, which checks prompt + n_gen fit


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


class LlamaLog:
    """Keeps llama.cpp's warnings and errors (they say why a context cannot be created, for
    example). llama-cpp-python 0.3.x maps ggml's log levels with an outdated table and drops
    errors when verbose=False; these are ggml's current values (ggml.h, enum ggml_log_level)."""

    WARN, ERROR, CONT = 3, 4, 5

    def __init__(self, lib):
        self.messages: list[str] = []
        self._last = 0

        @lib.llama_log_callback
        def _callback(level, text, user_data):
            if level in (self.WARN, self.ERROR) or (level == self.CONT and self._last in (self.WARN, self.ERROR)):
                self.messages.append(text.decode("utf-8", errors="replace").strip())
            if level != self.CONT:
                self._last = level

        # llama.cpp keeps the pointer until another callback replaces it, so the ctypes callback must
        # outlive this object: a freed one crashes the next model load in the same process
        _REGISTERED_LOG_CALLBACKS[:] = [_callback]
        lib.llama_log_set(_callback, ctypes.c_void_p(0))

    def why(self) -> str:
        said = [m for m in self.messages if m][-3:]
        return f"; llama.cpp said: {' | '.join(said)}" if said else ""


class Runner:
    def __init__(self, case: dict, case_dir: str):
        self.model_path = case["model_path"]
        self.workload = case["workload"]
        self.params = case["params"]
        self.case_dir = case_dir
        self.llm = None

    # -- load -------------------------------------------------------------------------------
    def _llama_kwargs(self) -> dict:
        p = self.params
        threads = p.get("threads") or os.cpu_count()
        kwargs = {
            "n_ctx": p.get("n_ctx", DEFAULT_N_CTX),
            "n_threads": threads,
            "n_threads_batch": p.get("threads_batch", threads),
            "n_gpu_layers": p.get("n_gpu_layers", 0),
            "flash_attn": p.get("flash_attn", False),
            "use_mmap": p.get("use_mmap", True),
            "verbose": False,
        }
        for key in ("n_batch", "n_ubatch"):
            if key in p:
                kwargs[key] = p[key]
        for key, arg in (("cache_type_k", "type_k"), ("cache_type_v", "type_v")):
            if key in p:
                kwargs[arg] = KV_TYPES[p[key]]
        return kwargs

    def load(self) -> dict:
        import llama_cpp

        self.lib = llama_cpp
        self.log = LlamaLog(llama_cpp)
        kwargs = self._llama_kwargs()
        t0 = time.monotonic_ns()
        try:
            self.llm = llama_cpp.Llama(model_path=self.model_path, **kwargs)
        except ValueError as e:
            raise RuntimeError(f"{e}{self.log.why()}") from None
        t1 = time.monotonic_ns()
        self.ctx = self.llm._ctx.ctx
        model = self.llm._model.model
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.n_batch = llama_cpp.llama_n_batch(self.ctx)
        self.n_gen = self.workload["n_gen"]
        self._prepare_prompts()
        desc = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(model, desc, len(desc))
        return {
            "load_s": (t1 - t0) / 1e9,
            "t_start_ns": t0,
            "t_end_ns": t1,
            "effective_params": {
                "threads": kwargs["n_threads"],
                "threads_batch": kwargs["n_threads_batch"],
                "n_ctx": self.n_ctx,
                "n_batch": self.n_batch,
                "n_ubatch": llama_cpp.llama_n_ubatch(self.ctx),
                "n_gpu_layers": kwargs["n_gpu_layers"],
                "flash_attn": kwargs["flash_attn"],
                "cache_type_k": self.params.get("cache_type_k", "f16"),
                "cache_type_v": self.params.get("cache_type_v", "f16"),
                "use_mmap": kwargs["use_mmap"],
            },
            "model": {
                "desc": desc.value.decode(errors="replace"),
                "n_params": llama_cpp.llama_model_n_params(model),
                "size_bytes": llama_cpp.llama_model_size(model),
                "n_vocab": self.n_vocab,
                "metadata": {k: v for k, v in self.llm.metadata.items() if not k.startswith("tokenizer.")},
            },
            "prompts": self.prompt_info,
            "llama_cpp_warnings": list(self.log.messages),
        }

    def _tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def _prepare_prompts(self) -> None:
        """Synthetic: the shortest prefix of the shipped text giving >= N tokens (the text is repeated
        when N is longer than it). Real: the JSONL prompts, used in turn, one per trial."""
        n = self.workload.get("prompt_tokens")
        if n is not None:
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
            self.prompt_info = {
                "kind": "synthetic",
                "prompt_tokens": n,
                "chars": lo,
                "text_file": PROMPT_TEXT,
            }
        else:
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
        if self.llm is not None:
            self.llm.close()
            self.llm = None
        return {}
