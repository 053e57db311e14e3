"""The tiny model generators produce files that the real runtimes load and run."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import (
    BOS_ID,
    EOS_ID,
    write_tiny_gguf,
    write_tiny_onnx,
    write_tiny_static_onnx,
    write_tiny_vad_branching_onnx,
)

SENTENCE = b"We hold these truths to be self-evident"


def _decode_all(llama_cpp, ctx, tokens: list[int], n_batch: int) -> None:
    for start in range(0, len(tokens), n_batch):
        chunk = tokens[start : start + n_batch]
        arr = (llama_cpp.llama_token * len(chunk))(*chunk)
        assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(chunk))) == 0


def test_tiny_gguf_is_deterministic(tmp_path):
    a = write_tiny_gguf(tmp_path / "a.gguf")
    b = write_tiny_gguf(tmp_path / "b.gguf")
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_size < 2_000_000


def test_tiny_gguf_loads_tokenizes_and_decodes(tmp_path):
    import llama_cpp

    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, verbose=False)
    assert llm.token_bos() == BOS_ID
    assert llm.token_eos() == EOS_ID
    assert llm._model.n_ctx_train() == 2048

    toks = llm.tokenize(SENTENCE, add_bos=True)
    assert toks[0] == BOS_ID
    assert 5 < len(toks) < 40
    assert llm.detokenize(toks).strip() == SENTENCE

    ctx = llm._ctx.ctx
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(llm._model.model))
    n_batch = llama_cpp.llama_n_batch(ctx)
    text = SENTENCE + b", that all men are created equal. " + b"The quick brown fox jumps over the lazy dog. "
    stream = llm.tokenize(text * 80, add_bos=True)

    for n_prompt in (100, 1200):
        prompt = stream[:n_prompt]
        assert len(prompt) == n_prompt
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        # llama_decode aborts the process if one batch exceeds n_batch (512 by default): chunk it.
        _decode_all(llama_cpp, ctx, prompt, n_batch)
        generated = []
        for _ in range(20):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            assert np.isfinite(logits).all()
            tok = int(np.argmax(logits))
            generated.append(tok)
            _decode_all(llama_cpp, ctx, [tok], n_batch)
        assert all(0 <= t < n_vocab for t in generated)
        assert isinstance(llm.detokenize(generated), bytes)


def test_tiny_onnx_vad_interface(tmp_path):
    import onnxruntime as ort

    path = write_tiny_onnx(tmp_path / "vad.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.shape, i.type) for i in sess.get_inputs()}
    assert inputs == {
        "input": (["batch", "samples"], "tensor(float)"),
        "state": ([2, "batch", 16], "tensor(float)"),
        "sr": ([], "tensor(int64)"),
    }
    assert [o.name for o in sess.get_outputs()] == ["output", "stateN"]

    rng = np.random.default_rng(0)
    for batch, samples in ((1, 512), (3, 1000)):
        feeds = {
            "input": rng.standard_normal((batch, samples)).astype(np.float32),
            "state": rng.standard_normal((2, batch, 16)).astype(np.float32),
            "sr": np.array(16000, dtype=np.int64),
        }
        output, state_n = sess.run(None, feeds)
        assert output.shape == (batch, 1)
        assert state_n.shape == (2, batch, 16)
        assert np.isfinite(output).all() and np.isfinite(state_n).all()


def test_tiny_static_onnx(tmp_path):
    import onnxruntime as ort

    path = write_tiny_static_onnx(tmp_path / "static.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.shape, inp.type) == ("x", [1, 3, 32, 32], "tensor(float)")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (y,) = sess.run(None, {"x": x})
    assert y.shape == (1, 4, 1, 1)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("frame_8k", [256, None], ids=["8k-takes-256-samples", "8k-takes-any-length"])
def test_tiny_branching_vad_picks_its_branch_by_sr(tmp_path, frame_8k):
    """The bug melt guards against: a random sr runs another branch, which fails far from sr or
    silently measures something else."""
    import onnxruntime as ort

    path = write_tiny_vad_branching_onnx(tmp_path / "vad.onnx", frame_8k)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert {i.name: (i.shape, i.type) for i in sess.get_inputs()}["sr"] == ([], "tensor(int64)")
    rng = np.random.default_rng(0)
    feeds = {
        "input": rng.standard_normal((1, 512)).astype(np.float32),
        "state": rng.standard_normal((2, 1, 16)).astype(np.float32),
    }
    out_16k, _ = sess.run(None, {**feeds, "sr": np.array(16000, dtype=np.int64)})
    assert out_16k.shape == (1, 1) and np.isfinite(out_16k).all()
    if frame_8k:
        with pytest.raises(Exception, match="MatMul") as failure:
            sess.run(None, {**feeds, "sr": np.array(28, dtype=np.int64)})
        assert "sr" not in str(failure.value).replace("stateN", "")  # no word of sr where it fails
        sess.run(None, {**feeds, "input": feeds["input"][:, :256], "sr": np.array(8000, dtype=np.int64)})
    else:
        out_other, _ = sess.run(None, {**feeds, "sr": np.array(28, dtype=np.int64)})
        assert not np.allclose(out_other, out_16k)  # silently another computation
