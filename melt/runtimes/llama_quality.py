"""Quality of a llama.cpp model, measured by the agent after the speed trials, with the same loaded model and
the case's params (device side: the standard library, llama-cpp-python and the numpy it depends on).

Perplexity is llama.cpp's own definition, llama-perplexity's perplexity() (tools/perplexity/perplexity.cpp):

- the text is tokenized with special tokens (a BOS where the vocabulary adds one), as common_tokenize does;
- it is cut into n_chunk = min(max_chunks, n_tokens // n_ctx) non-overlapping windows of n_ctx tokens; a text
  under 2 x n_ctx tokens is refused, as llama-perplexity refuses it;
- each window is decoded from an empty KV cache, its first token replaced by BOS where the vocabulary adds one;
- the tokens at positions n_ctx/2 .. n_ctx-2 are scored: nll = -log softmax(logits)[next token], so every
  scored token has at least n_ctx/2 tokens of context;
- ppl = exp(mean nll) over every scored token; its uncertainty as llama-perplexity prints it ("PPL = X +/- Y"):
  ppl x sqrt((mean(nll^2) - mean(nll)^2) / (count - 1)).

llama-perplexity packs n_batch / n_ctx windows into one batch as separate sequences; here each window is its own
decode (one sequence), which computes the same logits.

KL divergence from a reference model (recipe quality.reference) is scored on the same tokens: the reference's
case keeps, per scored token, its KLD_TOP_K largest log-probabilities (ids and values; values are log p, the logit
minus the log-sum-exp) and the dependent case, with the full distribution q of its own model, computes
KL(P || Q) with the reference's remaining mass r = 1 - sum(top k of p) taken as one outcome:
sum_top p_i log(p_i / q_i) + r log(r / q_rest), q_rest = 1 - sum_top q_i. By the log-sum inequality this is a
lower bound of the full KL, equal to it when r = 0; the full KL is at most r x log(p_k q_rest / (r q_min)) more
(p_k: the reference's k-th probability, an upper bound of every tail p_i; q_min: the dependent model's smallest
tail probability), reported as kld_upper_mean. llama-perplexity --kl-divergence keeps every log-probability
instead (16-bit): exact, but n_vocab x 2 bytes per token (0.5 MB for Gemma 3).

Multiple choice is lm-evaluation-harness's loglikelihood scoring (multiple_choice() says how); greedy_outputs()
keeps what the model writes, for drift checks.
"""

from __future__ import annotations

import math
import time

KLD_TOP_K = 128  # reference log-probabilities kept per scored token (module docstring: the bound this gives)
ROWS_AT_ONCE = 32  # rows scored together: bounds the float64 copy (32 x n_vocab x 8 bytes; 64 MB for Gemma 3)


class _Scorer:
    """Scores rows of logits against their next tokens as they come out of the decodes: the negative
    log-likelihoods; with keep_top_k, the reference's top-k log-probabilities per row (for another model's KL);
    with base (a reference's kept rows), the KL divergence from it per row."""

    def __init__(self, keep_top_k: int | None, base: dict | None):
        self.keep_top_k, self.base = keep_top_k, base
        self.nll, self.ids, self.logp, self.targets = [], [], [], []
        self.kld, self.gap, self.same_top = [], [], []
        self.n = 0

    def add(self, logits, targets) -> None:
        import numpy as np

        for s in range(0, len(targets), ROWS_AT_ONCE):
            rows = logits[s : s + ROWS_AT_ONCE].astype(np.float64)
            t = np.asarray(targets[s : s + ROWS_AT_ONCE])
            top = rows.max(axis=1)
            log_z = top + np.log(np.exp(rows - top[:, None]).sum(axis=1))
            self.nll.append(log_z - rows[np.arange(len(t)), t])
            self.targets.append(t)
            if self.keep_top_k:
                ids = np.argpartition(-rows, self.keep_top_k - 1, axis=1)[:, : self.keep_top_k]
                self.ids.append(ids.astype(np.int32))
                self.logp.append((np.take_along_axis(rows, ids, axis=1) - log_z[:, None]).astype(np.float32))
            if self.base is not None:
                self._divergence(rows - log_z[:, None], t)
            self.n += len(t)

    def _divergence(self, logq, t) -> None:
        """KL(reference || this model) per row from the reference's top-k (module docstring), its bound, and
        whether both put the same token first."""
        import numpy as np

        b = slice(self.n, self.n + len(t))
        if not np.array_equal(self.base["targets"][b], t):
            raise ValueError("the reference scored other tokens: it tokenizes the text differently (not the same "
                             "tokenizer), or scored another text or n_ctx")  # fmt: skip
        ids, logp = self.base["ids"][b].astype(np.int64), self.base["logp"][b].astype(np.float64)
        p_top = np.exp(logp)
        lq_top = np.take_along_axis(logq, ids, axis=1)
        r = np.clip(1 - p_top.sum(axis=1), 0, 1)  # the reference's mass outside its top k
        q_rest = np.clip(1 - np.exp(lq_top).sum(axis=1), 1e-300, 1)
        tail = np.where(r > 1e-12, r * (np.log(np.maximum(r, 1e-300)) - np.log(q_rest)), 0.0)
        self.kld.append((p_top * (logp - lq_top)).sum(axis=1) + tail)
        masked = logq.copy()
        np.put_along_axis(masked, ids, np.inf, axis=1)
        log_q_min = masked.min(axis=1)  # the least likely tail token, for this model
        gap = logp.min(axis=1) + np.log(q_rest) - np.log(np.maximum(r, 1e-300)) - log_q_min
        self.gap.append(np.where(r > 1e-12, r * np.maximum(gap, 0), 0.0))
        ref_top = np.take_along_axis(ids, logp.argmax(axis=1)[:, None], axis=1)[:, 0]
        self.same_top.append(ref_top == logq.argmax(axis=1))


def perplexity(
    runner, text: str, n_ctx: int, max_chunks: int | None, keep_top_k: int | None = None, base: dict | None = None
) -> dict:
    """Perplexity of runner's loaded model on `text` (runner: a loaded melt.runtimes.llama_cpp.Runner; a context
    of n_ctx tokens is made for it with the case's params and freed after). Returns {"ppl", "ppl_stderr",
    "tokens_scored", "n_chunks", "n_ctx", "n_tokens", "seconds"}; with keep_top_k, also "kld_base" {"ids",
    "logp" (n_scored x k), "targets", "ppl", "k"} for a dependent model's KL divergence; with base (such a
    kld_base, read back), also "kld" (kld_divergence()'s figures). Raises ValueError when the text is under
    2 x n_ctx tokens or base scored other tokens, RuntimeError when llama.cpp cannot make the context or
    decode."""
    import numpy as np  # llama-cpp-python depends on numpy, so it is there wherever this runs

    lib = runner.lib
    t0 = time.monotonic()
    tokens = runner._tokenize(text)
    if len(tokens) < 2 * n_ctx:
        raise ValueError(
            f"perplexity needs at least {2 * n_ctx} tokens for n_ctx {n_ctx}; the text tokenizes to {len(tokens)}"
        )
    n_chunk = len(tokens) // n_ctx if max_chunks is None else min(max_chunks, len(tokens) // n_ctx)
    cparams, _ = runner._context_params(lib, n_ctx)
    cparams.n_ctx = n_ctx
    cparams.n_batch = min(cparams.n_batch, n_ctx)  # llama-perplexity: n_batch = min(n_batch, n_ctx)
    ctx = lib.llama_init_from_model(runner.model, cparams)
    if not ctx:
        raise RuntimeError(f"Failed to create a llama_context of n_ctx {n_ctx} for perplexity{runner.log.why()}")
    n_vocab = runner.n_vocab
    n_batch = lib.llama_n_batch(ctx)
    bos = lib.llama_vocab_bos(runner.vocab) if lib.llama_vocab_get_add_bos(runner.vocab) else None
    first = n_ctx // 2
    batch = lib.llama_batch_init(n_batch, 0, 1)
    scorer = _Scorer(keep_top_k, base)
    try:
        for i in range(n_chunk):
            window = tokens[i * n_ctx : (i + 1) * n_ctx]
            if bos is not None:
                window[0] = bos
            lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
            for start in range(0, n_ctx, n_batch):
                part = window[start : start + n_batch]
                for k, token in enumerate(part):
                    pos = start + k
                    batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
                    batch.seq_id[k][0] = 0
                    batch.logits[k] = pos >= first
                batch.n_tokens = len(part)
                if lib.llama_decode(ctx, batch) != 0:
                    raise RuntimeError(f"llama_decode failed in perplexity window {i}{runner.log.why()}")
                scored = [p for p in range(max(start, first), start + len(part)) if p + 1 < n_ctx]
                if scored:  # the logits at position p predict window[p + 1]; the last position predicts past it
                    n_out = sum(1 for p in range(start, start + len(part)) if p >= first)
                    out = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(n_out * n_vocab,))
                    scorer.add(out.reshape(n_out, n_vocab)[: len(scored)], [window[p + 1] for p in scored])
    finally:
        lib.llama_batch_free(batch)
        lib.llama_free(ctx)
    token_nll = np.concatenate(scorer.nll)
    count = len(token_nll)
    mean = float(token_nll.mean())
    ppl = math.exp(mean)
    var = float((token_nll**2).mean()) - mean * mean
    result = {
        "ppl": ppl,
        "ppl_stderr": ppl * math.sqrt(var / (count - 1)) if var > 0 and count > 1 else None,
        "tokens_scored": count,
        "n_chunks": n_chunk,
        "n_ctx": n_ctx,
        "n_tokens": len(tokens),
        "seconds": time.monotonic() - t0,
        "nll": [round(float(x), 6) for x in token_nll],  # per scored token: melt compare pairs them across runs
    }
    if keep_top_k:
        result["kld_base"] = {"ids": np.concatenate(scorer.ids), "logp": np.concatenate(scorer.logp),
                              "targets": np.concatenate(scorer.targets).astype(np.int32), "ppl": ppl,
                              "k": keep_top_k}  # fmt: skip
    if base is not None:
        if scorer.n != len(base["targets"]):
            raise ValueError(f"the reference scored {len(base['targets'])} tokens, this model {scorer.n}: "
                             "not the same text, n_ctx or max_chunks")  # fmt: skip
        kld, gap = np.concatenate(scorer.kld), np.concatenate(scorer.gap)
        result["kld"] = {
            "kld_mean": float(kld.mean()),
            "kld_p99": float(np.percentile(kld, 99)),
            "kld_max": float(kld.max()),
            "kld_upper_mean": float((kld + gap).mean()),
            "top1_agree_pct": 100 * float(np.concatenate(scorer.same_top).mean()),
            "ppl_ratio": ppl / float(base["ppl"]),
            "top_k": int(base["k"]),
            "tokens": scorer.n,
            "per_token": [round(float(x), 8) for x in kld],
        }
    return result


def _continuation(runner, context: str, choice: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-evaluation-harness splits them (_encode_pair): trailing
    whitespace of the context moves to the continuation; the pair is tokenized whole and the continuation is what
    follows the context's own tokens, so a token that spans the boundary is not split twice."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, choice = context[:-spaces], context[-spaces:] + choice
    whole = runner._tokenize(context + choice)
    ctx = runner._tokenize(context)
    return ctx, whole[len(ctx) :]


def _stderr_pct(hits: list[bool]) -> float | None:
    """The standard error of a mean of 0/1 outcomes, in percent: sample sd / sqrt(n), as lm-evaluation-harness's
    mean_stderr (= sqrt(p (1 - p) / (n - 1)))."""
    n = len(hits)
    if n < 2:
        return None
    p = sum(hits) / n
    return 100 * math.sqrt(p * (1 - p) / (n - 1))


def multiple_choice(runner, tasks: list[dict], limit: int | None) -> dict:
    """Multiple-choice accuracy by log-likelihood, as lm-evaluation-harness scores `acc` and `acc_norm`: for each
    task ({"context": str, "choices": [str, ...], "answer": index}) the log-likelihood of each choice's tokens
    given the context; acc picks the largest sum, acc_norm the largest sum per character of the choice. Each
    choice is decoded whole from an empty KV cache in a context made with the case's params. Returns
    {"accuracy_pct", "accuracy_norm_pct", their "..._stderr_pct", "n", "items": [{"ll": [...], "pred",
    "pred_norm", "answer"}], "seconds"}. Raises RuntimeError when llama.cpp cannot make the context or decode."""
    import numpy as np

    lib = runner.lib
    t0 = time.monotonic()
    tasks = tasks if limit is None else tasks[:limit]
    pairs = [[_continuation(runner, t["context"], c) for c in t["choices"]] for t in tasks]
    n_ctx = max(len(ctx) + len(cont) for task in pairs for ctx, cont in task)
    cparams, _ = runner._context_params(lib, n_ctx)
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = n_ctx  # one decode per choice
    ctx_ptr = lib.llama_init_from_model(runner.model, cparams)
    if not ctx_ptr:
        raise RuntimeError(f"Failed to create a llama_context of n_ctx {n_ctx} for multiple choice{runner.log.why()}")
    n_vocab = runner.n_vocab
    batch = lib.llama_batch_init(n_ctx, 0, 1)
    items = []
    try:
        for task, choices in zip(tasks, pairs, strict=True):
            lls = []
            for ctx_tokens, cont in choices:
                seq = ctx_tokens + cont
                first = len(ctx_tokens) - 1  # the logits at this position predict the first continuation token
                for k, token in enumerate(seq):
                    batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, k, 1
                    batch.seq_id[k][0] = 0
                    batch.logits[k] = first <= k < len(seq) - 1
                batch.n_tokens = len(seq)
                lib.llama_memory_clear(lib.llama_get_memory(ctx_ptr), True)
                if lib.llama_decode(ctx_ptr, batch) != 0:
                    raise RuntimeError(f"llama_decode failed scoring a choice{runner.log.why()}")
                out = np.ctypeslib.as_array(lib.llama_get_logits(ctx_ptr), shape=(len(cont) * n_vocab,))
                logits = out.reshape(len(cont), n_vocab).astype(np.float64)
                top = logits.max(axis=1)
                log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
                lls.append(float((logits[np.arange(len(cont)), cont] - log_z).sum()))
            norm = [ll / max(1, len(c)) for ll, c in zip(lls, task["choices"], strict=True)]
            items.append({"ll": lls, "pred": int(np.argmax(lls)), "pred_norm": int(np.argmax(norm)),
                          "answer": task["answer"]})  # fmt: skip
    finally:
        lib.llama_batch_free(batch)
        lib.llama_free(ctx_ptr)
    acc = [i["pred"] == i["answer"] for i in items]
    acc_norm = [i["pred_norm"] == i["answer"] for i in items]
    return {
        "accuracy_pct": 100 * sum(acc) / len(acc) if acc else None,
        "accuracy_norm_pct": 100 * sum(acc_norm) / len(acc_norm) if acc_norm else None,
        "accuracy_stderr_pct": _stderr_pct(acc),
        "accuracy_norm_stderr_pct": _stderr_pct(acc_norm),
        "n": len(items),
        "items": items,
        "seconds": time.monotonic() - t0,
    }


def _piece(runner, token: int) -> str:
    """The text of one token (llama_token_to_piece, special tokens rendered), for reading a drift."""
    import ctypes

    buf = ctypes.create_string_buffer(256)
    n = runner.lib.llama_token_to_piece(runner.vocab, token, buf, len(buf), 0, True)
    return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")


def greedy_outputs(runner, prompts: list[str], n_gen: int) -> dict:
    """The greedy continuation of each prompt, kept so that `melt compare` can say whether a new build or model
    still writes the same thing and where it first differs: n_gen tokens per prompt, argmax of the logits at each
    step, end-of-generation ignored (as in the speed trials, so every output has the same length), decoded one
    token at a time after the prompt in a context made with the case's params. Returns {"n_gen", "items":
    [{"tokens": [...], "text": str}], "seconds"}. Raises RuntimeError when llama.cpp cannot make the context
    or decode."""
    import numpy as np

    lib = runner.lib
    t0 = time.monotonic()
    encoded = [runner._tokenize(p) for p in prompts]
    n_ctx = max(len(e) for e in encoded) + n_gen
    cparams, _ = runner._context_params(lib, n_ctx)
    cparams.n_ctx = n_ctx
    ctx = lib.llama_init_from_model(runner.model, cparams)
    if not ctx:
        raise RuntimeError(f"Failed to create a llama_context of n_ctx {n_ctx} for outputs{runner.log.why()}")
    items = []
    try:
        n_batch = lib.llama_n_batch(ctx)
        for tokens in encoded:
            lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
            for start in range(0, len(tokens), n_batch):
                part = (lib.llama_token * len(tokens[start : start + n_batch]))(*tokens[start : start + n_batch])
                # `part` must outlive the decode: the batch only points at it
                if lib.llama_decode(ctx, lib.llama_batch_get_one(part, len(part))):
                    raise RuntimeError(f"llama_decode failed on an outputs prompt{runner.log.why()}")
            one = (lib.llama_token * 1)()
            out = []
            for _ in range(n_gen):
                logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(runner.n_vocab,))
                token = int(logits.argmax())
                out.append(token)
                one[0] = token
                if lib.llama_decode(ctx, lib.llama_batch_get_one(one, 1)):
                    raise RuntimeError(f"llama_decode failed generating an output{runner.log.why()}")
            items.append({"tokens": out, "text": "".join(_piece(runner, t) for t in out)})
    finally:
        lib.llama_free(ctx)
    return {"n_gen": n_gen, "items": items, "seconds": time.monotonic() - t0}
