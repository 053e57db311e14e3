"""Generators for real, tiny models that real runtimes load.

Used by the test suite so that runtime adapters can be exercised end to end without downloading
anything:

* :func:`write_tiny_gguf` writes a ~2-layer LLaMA-architecture GGUF (random F32 weights, SPM tokenizer
  with byte fallback) that llama.cpp / llama-cpp-python loads and decodes from.
* :func:`write_tiny_onnx` writes an ONNX graph with Silero VAD's interface (``input``, ``state``, ``sr``
  -> ``output``, ``stateN``) with dynamic batch / sample dimensions.
* :func:`write_tiny_static_onnx` writes an ONNX graph with a single fully static input ``x``.
* :func:`write_tiny_vad_branching_onnx` writes a Silero-VAD-like graph whose ``sr`` picks an If branch,
  as the real Silero VAD's does.
* :func:`write_graph` writes any small graph the tests build node by node.

All outputs are deterministic (fixed numpy seeds, fixed metadata).
"""

from __future__ import annotations

import pathlib

import numpy as np

# --------------------------------------------------------------------------------------------------
# GGUF (llama.cpp)
# --------------------------------------------------------------------------------------------------

GGUF_N_EMBD = 64
GGUF_N_LAYER = 2
GGUF_N_HEAD = 4
GGUF_N_HEAD_KV = 4
GGUF_N_FF = 128

UNK_ID = 0
BOS_ID = 1
EOS_ID = 2

_SPACE = "\u2581"  # SentencePiece word-boundary marker "▁"

# Common English words; each becomes a "▁word" piece.
_WORDS_TEXT = (
    "the of and to a in is it you that he was for on are with as I his they be at one have this from "
    "or had by hot word but what some we can out other were all there when up use your how said an each "
    "she which do their time if will way about many then them write would like so these her long make "
    "thing see him two has look more day could go come did number sound no most people my over know "
    "water than call first who may down side been now find any new work part take get place made live "
    "where after back little only round man year came show every good me give our under name very "
    "through just form sentence great think say help low line differ turn cause much mean before move "
    "right boy old too same tell does set three want air well also play small end put home read hand "
    "port large spell add even land here must big high such follow act why ask men change went light "
    "kind off need house picture try us again animal point mother world near build self earth father "
    "hold truths truth evident created equal life liberty pursuit happiness"
)
_WORDS = _WORDS_TEXT.split()

# Common sub-word pieces (no leading space marker) so unknown words split into a few pieces.
_PIECES_TEXT = (
    "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me "
    "de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ing ion ent tion the and for ter ati ere"
)
_PIECES = _PIECES_TEXT.split()


def _tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """SPM-style vocab: <unk>, <s>, </s>, 256 byte tokens, single chars, sub-word pieces, words."""
    import gguf

    tt = gguf.TokenType
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    scores: list[float] = [0.0, 0.0, 0.0]
    types: list[int] = [tt.UNKNOWN, tt.CONTROL, tt.CONTROL]

    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(tt.BYTE)

    seen: set[str] = set(tokens)
    # SentencePiece merges pieces greedily by score: longer / more frequent pieces get higher scores.
    candidates: list[tuple[str, float]] = []
    chars = [_SPACE] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    chars += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    chars += list("0123456789.,;:!?'\"-()")
    candidates += [(c, -1000.0 - i) for i, c in enumerate(chars)]
    candidates += [(p, -100.0 - i) for i, p in enumerate(_PIECES)]
    candidates += [(_SPACE + c, -500.0 - i) for i, c in enumerate(chars[1:])]
    # Every prefix of every "▁word" is a piece (with a higher score than the sub-word pieces), so the
    # SPM bigram merge always has a path from single characters up to the whole word.
    for i, word in enumerate(_WORDS):
        for k in range(1, len(word) + 1):
            candidates.append((_SPACE + word[:k], -1.0 - i * 0.01 - k * 0.001))
    for text, score in candidates:
        if text in seen:
            continue
        seen.add(text)
        tokens.append(text)
        scores.append(score)
        types.append(tt.NORMAL)
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(
    path: pathlib.Path, n_ctx_train: int = 2048, seed: int = 0, weights: str = "f32", tied_output: bool = False
) -> pathlib.Path:
    """Write a tiny deterministic LLaMA GGUF to ``path`` and return the path.

    Architecture: n_embd 64, 2 layers, 4 heads, n_ff 128, random weights (numpy seed `seed`). weights "f32": every
    tensor F32; "q8_0" / "q4_0": the same values with every matrix quantised by the gguf package (norms stay F32,
    as llama.cpp's quantize leaves them), so they differ only by quantisation. tied_output: no output.weight (the
    output matrix is token_embd, as llama.cpp loads a tied embedding). Tokenizer: SPM ("llama") with
    <unk>=0, <s>=1, </s>=2, 256 byte-fallback tokens and a few hundred word pieces.
    """
    import gguf

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = _tiny_vocab()
    n_vocab = len(tokens)
    n_embd, n_ff, n_head, n_head_kv = GGUF_N_EMBD, GGUF_N_FF, GGUF_N_HEAD, GGUF_N_HEAD_KV
    head_dim = n_embd // n_head

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("melt-tiny-llama")
    w.add_context_length(int(n_ctx_train))
    w.add_embedding_length(n_embd)
    w.add_block_count(GGUF_N_LAYER)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                  "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}  # fmt: skip
    w.add_file_type(file_types[weights])

    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_unk_token_id(UNK_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    rng = np.random.default_rng(seed)
    qtypes = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}
    if weights != "f32" and weights not in qtypes:
        raise ValueError(f"weights {weights!r}: expected f32, q8_0 or q4_0")

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    add_tensor = w.add_tensor

    def add_matrix(name: str, data: np.ndarray) -> None:
        if weights in qtypes and data.ndim == 2:
            add_tensor(name, gguf.quants.quantize(data, qtypes[weights]), raw_dtype=qtypes[weights])
        else:
            add_tensor(name, data)

    w.add_tensor = add_matrix  # every tensor below goes through the choice of weights

    ones = np.ones(n_embd, dtype=np.float32)
    # numpy shapes are (rows, cols) = reversed ggml ne; ggml wants ne = {n_in, n_out}.
    w.add_tensor("token_embd.weight", rand(n_vocab, n_embd, scale=1.0))
    for i in range(GGUF_N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones.copy())
        w.add_tensor(p + "attn_q.weight", rand(n_head * head_dim, n_embd))
        w.add_tensor(p + "attn_k.weight", rand(n_head_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_v.weight", rand(n_head_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_output.weight", rand(n_embd, n_head * head_dim))
        w.add_tensor(p + "ffn_norm.weight", ones.copy())
        w.add_tensor(p + "ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", rand(n_embd, n_ff))
    w.add_tensor("output_norm.weight", ones.copy())
    if not tied_output:
        w.add_tensor("output.weight", rand(n_vocab, n_embd, scale=0.5))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# --------------------------------------------------------------------------------------------------
# ONNX (onnxruntime)
# --------------------------------------------------------------------------------------------------

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # opset 17 <-> IR 8; loadable by any onnxruntime >= 1.13


def _finish_onnx(
    graph, path: pathlib.Path, opset: int = ONNX_OPSET, domains: dict | None = None, check: bool = True
) -> pathlib.Path:
    import onnx
    from onnx import helper

    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="melt-tests")
    model.ir_version = ONNX_IR_VERSION if opset <= ONNX_OPSET else 10  # opset 18-21 <-> IR 8-10
    if check:  # a custom-domain op has no schema for the checker to hold it to
        onnx.checker.check_model(model, full_check=True)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_tiny_onnx(path: pathlib.Path) -> pathlib.Path:
    """Write a tiny ONNX graph with Silero VAD's interface to ``path`` and return the path.

    Inputs: ``input`` float32 [batch, samples], ``state`` float32 [2, batch, 16], ``sr`` int64 [].
    Outputs: ``output`` float32 [batch, 1] (a probability in (0, 1)), ``stateN`` float32 [2, batch, 16].
    Works for any batch / samples length.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w_state = numpy_helper.from_array((rng.standard_normal((16, 16)) * 0.1).astype(np.float32), "w_state")
    w_out = numpy_helper.from_array((rng.standard_normal((16, 1)) * 0.1).astype(np.float32), "w_out")
    sr_scale = numpy_helper.from_array(np.array(1.0 / 16000.0, dtype=np.float32), "sr_scale")

    nodes = [
        # energy = mean(|input|, axis=1) -> [batch, 1]
        helper.make_node("Abs", ["input"], ["abs_in"]),
        helper.make_node("ReduceMean", ["abs_in"], ["energy"], axes=[1], keepdims=1),
        # sr_f = float(sr) / 16000 (scalar)
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sr_f", "sr_scale"], ["sr_n"]),
        helper.make_node("Mul", ["energy", "sr_n"], ["feat"]),  # [batch, 1]
        # stateN = tanh(state @ w_state + feat)   ([2, batch, 16] + [batch, 1] broadcasts)
        helper.make_node("MatMul", ["state", "w_state"], ["st_mm"]),
        helper.make_node("Add", ["st_mm", "feat"], ["st_pre"]),
        helper.make_node("Tanh", ["st_pre"], ["stateN"]),
        # output = sigmoid(mean_over_layers(stateN) @ w_out + feat) -> [batch, 1]
        helper.make_node("ReduceMean", ["stateN"], ["st_mean"], axes=[0], keepdims=0),  # [batch, 16]
        helper.make_node("MatMul", ["st_mean", "w_out"], ["logit0"]),  # [batch, 1]
        helper.make_node("Add", ["logit0", "feat"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "melt_tiny_vad",
        inputs=[
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 16]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        outputs=[
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 16]),
        ],
        initializer=[w_state, w_out, sr_scale],
    )
    return _finish_onnx(graph, path)


def write_tiny_static_onnx(path: pathlib.Path) -> pathlib.Path:
    """Write a tiny ONNX graph with one fully static input ``x`` float32 [1, 3, 32, 32].

    Output ``y`` float32 [1, 4, 1, 1]: 3x3 Conv (4 channels, padded) -> Relu -> GlobalAveragePool.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    conv_w = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.1).astype(np.float32), "conv_w")
    conv_b = numpy_helper.from_array(np.zeros(4, dtype=np.float32), "conv_b")
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "melt_tiny_static",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])],
        initializer=[conv_w, conv_b],
    )
    return _finish_onnx(graph, path)


def write_graph(
    path: pathlib.Path,
    nodes: list,
    inputs: list,
    outputs: list,
    initializers: list | None = None,
    opset: int = ONNX_OPSET,
    domains: dict | None = None,
    check: bool = True,
) -> pathlib.Path:
    """Write a graph built from onnx.helper nodes and value infos (tests build small graphs node by node).

    domains: extra opset imports, e.g. {"com.example": 1} for a custom op (then check=False).
    """
    from onnx import helper

    graph = helper.make_graph(nodes, pathlib.Path(path).stem, inputs, outputs, initializer=initializers or [])
    return _finish_onnx(graph, path, opset, domains, check)


def _vad_branch(prefix: str, scale: float, frame: int | None):
    """One sample-rate branch of the branching VAD: reads the outer `input` and `state` (captured).

    frame None: any number of samples (energy feature); frame N: an N-sample frame projected by a
    [N, 1] weight, so another length fails inside MatMul, far from `sr` (as Silero's LSTM does).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3 if frame else 4)
    inits = [
        numpy_helper.from_array((rng.standard_normal((16, 16)) * 0.1).astype(np.float32), f"{prefix}w_state"),
        numpy_helper.from_array((rng.standard_normal((16, 1)) * 0.1).astype(np.float32), f"{prefix}w_out"),
        numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{prefix}scale"),
    ]
    if frame:
        inits.append(
            numpy_helper.from_array((rng.standard_normal((frame, 1)) * 0.1).astype(np.float32), f"{prefix}w_in")
        )
        feature = [helper.make_node("MatMul", ["input", f"{prefix}w_in"], [f"{prefix}energy"])]
    else:
        feature = [
            helper.make_node("Abs", ["input"], [f"{prefix}abs"]),
            helper.make_node("ReduceMean", [f"{prefix}abs"], [f"{prefix}energy"], axes=[1], keepdims=1),
        ]
    nodes = feature + [
        helper.make_node("Mul", [f"{prefix}energy", f"{prefix}scale"], [f"{prefix}feat"]),
        helper.make_node("MatMul", ["state", f"{prefix}w_state"], [f"{prefix}st_mm"]),
        helper.make_node("Add", [f"{prefix}st_mm", f"{prefix}feat"], [f"{prefix}st_pre"]),
        helper.make_node("Tanh", [f"{prefix}st_pre"], [f"{prefix}stateN"]),
        helper.make_node("ReduceMean", [f"{prefix}stateN"], [f"{prefix}st_mean"], axes=[0], keepdims=0),
        helper.make_node("MatMul", [f"{prefix}st_mean", f"{prefix}w_out"], [f"{prefix}logit"]),
        helper.make_node("Sigmoid", [f"{prefix}logit"], [f"{prefix}output"]),
    ]
    return helper.make_graph(
        nodes,
        f"{prefix}branch",
        [],
        [
            helper.make_tensor_value_info(f"{prefix}output", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info(f"{prefix}stateN", TensorProto.FLOAT, [2, "batch", 16]),
        ],
        initializer=inits,
    )


def write_tiny_vad_branching_onnx(path: pathlib.Path, frame_8k: int | None = 256) -> pathlib.Path:
    """Silero VAD's interface (``input`` [batch, samples], ``state`` [2, batch, 16], ``sr`` int64 scalar)
    with Silero's control flow: ``If(Equal(sr, 16000))`` picks the 16 kHz branch, else the 8 kHz one.

    frame_8k: 256 makes the 8 kHz branch take 256-sample frames only (a 512-sample input fails there,
    in a MatMul, with no word of ``sr``: the real model fails in its LSTM); None makes it take any
    length (another sample rate silently measures the other branch).
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Equal", ["sr", "sr_16k"], ["is_16k"]),
        helper.make_node(
            "If",
            ["is_16k"],
            ["output", "stateN"],
            then_branch=_vad_branch("k16_", 1.0, None),
            else_branch=_vad_branch("k8_", 2.0, frame_8k),
        ),
    ]
    return write_graph(
        path,
        nodes,
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 16]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 16]),
        ],
        [numpy_helper.from_array(np.array(16000, dtype=np.int64), "sr_16k")],
    )
