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

Multiple choice is lm-evaluation-harness's loglikelihood scoring (multiple_choice() says how); greedy_outputs()
keeps what the model writes, for drift checks.
"""

from __future__ import annotations

import math
import time


def perplexity(runner, text: str, n_ctx: int, max_chunks: int | None) -> dict:
    """Perplexity of runner's loaded model on `text` (runner: a loaded melt.runtimes.llama_cpp.Runner; a context
    of n_ctx tokens is made for it with the case's params and freed after). Returns {"ppl", "ppl_stderr",
    "tokens_scored", "n_chunks", "n_ctx", "n_tokens", "seconds"}. Raises ValueError when the text is under
    2 x n_ctx tokens, RuntimeError when llama.cpp cannot make the context or decode."""
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
    nll = nll2 = 0.0
    count = 0
    try:
        for i in range(n_chunk):
            window = tokens[i * n_ctx : (i + 1) * n_ctx]
            if bos is not None:
                window[0] = bos
            lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
            rows = []  # logits of positions first .. n_ctx-1, in order
            for start in range(0, n_ctx, n_batch):
                part = window[start : start + n_batch]
                n_out = 0
                for k, token in enumerate(part):
                    pos = start + k
                    batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
                    batch.seq_id[k][0] = 0
                    batch.logits[k] = pos >= first
                    n_out += pos >= first
                batch.n_tokens = len(part)
                if lib.llama_decode(ctx, batch) != 0:
                    raise RuntimeError(f"llama_decode failed in perplexity window {i}{runner.log.why()}")
                if n_out:
                    out = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(n_out * n_vocab,))
                    rows.append(out.reshape(n_out, n_vocab).astype(np.float64))
            logits = np.concatenate(rows)[:-1]  # position n_ctx-1 predicts past the window
            targets = np.asarray(window[first + 1 :])
            top = logits.max(axis=1)
            log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
            token_nll = log_z - logits[np.arange(len(targets)), targets]
            nll += float(token_nll.sum())
            nll2 += float((token_nll**2).sum())
            count += len(targets)
    finally:
        lib.llama_batch_free(batch)
        lib.llama_free(ctx)
    mean = nll / count
    ppl = math.exp(mean)
    var = nll2 / count - mean * mean
    return {
        "ppl": ppl,
        "ppl_stderr": ppl * math.sqrt(var / (count - 1)) if var > 0 and count > 1 else None,
        "tokens_scored": count,
        "n_chunks": n_chunk,
        "n_ctx": n_ctx,
        "n_tokens": len(tokens),
        "seconds": time.monotonic() - t0,
    }


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
