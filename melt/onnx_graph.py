"""Which inputs of an ONNX model melt may fill with random numbers, and which need a value from the recipe.

Host side only (uses the `onnx` package; the device agent never imports it). `melt validate` and
`melt run` call :func:`inspect` on the model file; melt/onnx_feeds.py then checks the recipe's
`workload.inputs` against the result and plans the feed of every input (case.json, key `feeds`).

How an input is classified. Each graph input is followed through the graph, including the
subgraphs of If, Loop, Scan and SequenceMap (by their explicit inputs and by outer-scope names
they capture), to every operand it reaches. Operand roles follow the ONNX operator spec
(onnx/docs/Operators.md; operand names as in onnx.defs, so every opset version is covered):

* steer: the value picks a shape, an axis, a count, a branch or a trip count (Reshape.shape,
  Expand.shape, Tile.repeats, Slice.starts/ends/axes/steps, ConstantOfShape.input, Range.*,
  Resize.roi/scales/sizes, TopK.K, If.cond, Loop.M/cond, a Loop body's condition output, OneHot.depth,
  Pad.pads/axes, Squeeze/Unsqueeze.axes, Reduce*.axes, Split.split, ...). Random numbers there
  measure a model that nobody runs, or crash it far from the cause: such an input needs a value.
* index: the value indexes another operand (Gather/GatherElements/GatherND/Scatter*.indices,
  RoiAlign.batch_indices, ArrayFeatureExtractor.Y, RotaryEmbedding.position_ids). Token ids into an
  embedding are indices, yet any id in range is a legitimate input: such an input carries data,
  drawn uniformly in [0, extent) when the extent of the indexed axis is fixed in the graph (an
  initializer, a Constant, a declared or inferred fixed dimension) and the values reach the
  operand unchanged (through Cast, Reshape, Concat, Gather's data operand and the like). When no
  extent can be known, or arithmetic changed the values on the way, a value (or a `range`) is
  needed: melt never draws an index out of range.
* nonzero: the divisor of an integer Div or Mod (integer division by zero is undefined): random
  integers start at 1.
* shape only: Shape, Size, EyeLike, CastLike.target_type, Random*Like read only the operand's
  shape or type: the values do not matter.
* data: every other operand of a standard operator is defined for every value.
  Floats (and integers that only meet such operands) get random data, with a fixed seed.

Beyond that: a scalar (rank 0) input always needs a value (a sample rate, a threshold, a step
count: one number that means something); a string input needs a value (melt cannot make up
text); an integer or bool value reaching an operator melt does not know (a custom domain such as
com.microsoft, or a model-local function) needs a value, or for integers a `range`.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_INT_HIGH = 100  # integers that only carry data: uniform in [0, 100), as melt always drew them

# ONNX TensorProto.DataType -> numpy dtype name ("str" for strings): the element types melt can feed.
# Source: onnx/onnx.proto3 (TensorProto.DataType).
FEEDABLE = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "str",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}

STEER, INDEX, NONZERO, SHAPE_ONLY, KEEP = "steer", "index", "nonzero", "shape only", "keep"

_REDUCE = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
           "ReduceProd", "ReduceSum", "ReduceSumSquare")  # fmt: skip

# (domain, op_type) -> {operand name: role}; operand names as onnx.defs spells them (Operators.md).
ROLES: dict[tuple[str, str], dict[str, str]] = {
    ("", "Reshape"): {"shape": STEER, "data": KEEP},
    ("", "Expand"): {"shape": STEER, "input": KEEP},
    ("", "Tile"): {"repeats": STEER, "input": KEEP},
    ("", "Slice"): {"starts": STEER, "ends": STEER, "axes": STEER, "steps": STEER, "data": KEEP},
    ("", "ConstantOfShape"): {"input": STEER},
    ("", "Range"): {"start": STEER, "limit": STEER, "delta": STEER},
    ("", "Resize"): {"roi": STEER, "scales": STEER, "sizes": STEER},
    ("", "Upsample"): {"scales": STEER},
    ("", "TopK"): {"K": STEER},
    ("", "If"): {"cond": STEER},
    ("", "Loop"): {"M": STEER, "cond": STEER},
    ("", "OneHot"): {"depth": STEER},  # out-of-range indices are defined (an all-off row): data
    ("", "Pad"): {"pads": STEER, "axes": STEER, "data": KEEP},
    ("", "Squeeze"): {"axes": STEER, "data": KEEP},
    ("", "Unsqueeze"): {"axes": STEER, "data": KEEP},
    ("", "Split"): {"split": STEER, "input": KEEP},
    ("", "SplitToSequence"): {"split": STEER, "input": KEEP},
    ("", "CenterCropPad"): {"shape": STEER, "input_data": KEEP},
    ("", "Col2Im"): {"image_shape": STEER, "block_shape": STEER},
    ("", "CumSum"): {"axis": STEER},
    ("", "DFT"): {"dft_length": STEER, "axis": STEER},
    ("", "STFT"): {"frame_step": STEER, "frame_length": STEER},
    ("", "Dropout"): {"ratio": STEER, "training_mode": STEER},
    ("", "NonMaxSuppression"): {
        "max_output_boxes_per_class": STEER,
        "iou_threshold": STEER,
        "score_threshold": STEER,
    },  # fmt: skip
    ("", "Compress"): {"condition": STEER, "input": KEEP},
    ("", "ReverseSequence"): {"sequence_lens": STEER, "input": KEEP},
    ("", "MaxUnpool"): {"I": STEER, "output_shape": STEER},
    ("", "MelWeightMatrix"): dict.fromkeys(
        ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz"), STEER
    ),
    ("", "HannWindow"): {"size": STEER},
    ("", "HammingWindow"): {"size": STEER},
    ("", "BlackmanWindow"): {"size": STEER},
    ("", "Trilu"): {"k": STEER},
    ("", "AffineGrid"): {"size": STEER},
    ("", "SequenceAt"): {"position": STEER, "input_sequence": KEEP},
    ("", "SequenceInsert"): {"position": STEER, "input_sequence": KEEP, "tensor": KEEP},
    ("", "SequenceErase"): {"position": STEER, "input_sequence": KEEP},
    ("", "ImageDecoder"): {"encoded_stream": STEER},  # random bytes are no image
    ("", "Attention"): {"nonpad_kv_seqlen": STEER},
    ("", "TensorScatter"): {"write_indices": STEER},
    ("", "Gather"): {"indices": INDEX, "data": KEEP},
    ("", "GatherElements"): {"indices": INDEX, "data": KEEP},
    ("", "GatherND"): {"indices": INDEX, "data": KEEP},
    ("", "Scatter"): {"indices": INDEX},
    ("", "ScatterElements"): {"indices": INDEX},
    ("", "ScatterND"): {"indices": INDEX},
    ("", "RoiAlign"): {"batch_indices": INDEX},
    ("", "RotaryEmbedding"): {"position_ids": INDEX},
    ("ai.onnx.ml", "ArrayFeatureExtractor"): {"Y": INDEX},
    ("", "Div"): {"B": NONZERO},
    ("", "Mod"): {"B": NONZERO},
    ("", "Shape"): {"data": SHAPE_ONLY},
    ("", "Size"): {"data": SHAPE_ONLY},
    ("", "EyeLike"): {"input": SHAPE_ONLY},
    ("", "RandomNormalLike"): {"input": SHAPE_ONLY},
    ("", "RandomUniformLike"): {"input": SHAPE_ONLY},
    ("", "Bernoulli"): {},
    ("", "CastLike"): {"target_type": SHAPE_ONLY, "input": KEEP},
    ("", "Identity"): {"input": KEEP},
    ("", "Cast"): {"input": KEEP},
    ("", "Flatten"): {"input": KEEP},
    ("", "Transpose"): {"data": KEEP},
    ("", "Concat"): {"inputs": KEEP},
    ("", "SequenceConstruct"): {"inputs": KEEP},
    ("", "ConcatFromSequence"): {"input_sequence": KEEP},
    ("", "Where"): {"X": KEEP, "Y": KEEP},
    ("", "DepthToSpace"): {"input": KEEP},
    ("", "SpaceToDepth"): {"input": KEEP},
    ("", "Optional"): {"input": KEEP},
    ("", "OptionalGetElement"): {"input": KEEP},
    **{("", op): {"axes": STEER} for op in _REDUCE},
}
# Ops whose output is bool whatever the operand: the element kind changes on the way.
_TO_BOOL = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf"}
_COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}
# Ops whose explicit inputs flow into the body input at the same position (Operators.md: Loop's
# body takes (iteration, cond, carried...), Scan's (states..., scan slices...), SequenceMap's
# (sequence items, additional inputs...)); a body's outputs come out as the op's outputs.
_BODY_OPS = {"Loop", "Scan", "SequenceMap"}


@dataclass
class Use:
    """One operand an input's values reach."""

    role: str  # STEER | INDEX | NONZERO | "unknown"
    operand: str  # e.g. "If.cond", "Gather.indices", "com.microsoft.EmbedLayerNormalization input 0"
    via: tuple[str, ...] = ()  # ops passed on the way, e.g. ("Equal",)
    kept: bool = True  # the values reach the operand unchanged
    extent: int | None = None  # INDEX: size of the indexed axis when the graph fixes it
    extent_from: str = ""  # where the extent was read, for the record
    hints: tuple = ()  # constants the input is compared with on the way (e.g. 16000 for a sample rate)

    def describe(self) -> str:
        return f"{self.operand}" + (f" via {', '.join(self.via)}" if self.via else "")


@dataclass
class InputInfo:
    """What the graph says of one input, and what melt may feed it."""

    name: str
    onnx_type: str  # e.g. "tensor(int64)", "seq(tensor(float))"
    dtype: str | None  # numpy dtype name, "str", or None where melt cannot feed this type
    shape: list | None  # declared dims: int (fixed), str (named) or None (unknown); None: rank unknown
    uses: list[Use] = field(default_factory=list)

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def kind(self) -> str:
        return "str" if self.dtype == "str" else "bool" if self.dtype == "bool" else (
            "float" if self.dtype and self.dtype.startswith("float") else "int"
        )  # fmt: skip

    def label(self) -> str:
        """'scalar int64', 'int64 [batch, 16]'."""
        if self.rank == 0:
            return f"scalar {self.dtype or self.onnx_type}"
        return f"{self.dtype or self.onnx_type} {dims_text(self.shape)}"

    def needs_value(self) -> str | None:
        """Why only a value will do, as a phrase to follow '<name> is <label>' (None: random data is fine)."""
        steer = [u for u in self.uses if u.role == STEER]
        if steer:
            return f" feeding {steer[0].describe()}"
        if self.rank == 0:
            return ": one number that means something (a rate, a threshold, a count)"
        if self.dtype == "str":
            return ": melt cannot make up text"
        if self.kind != "int":  # random floats or bools turned into indices, divisors or custom-op integers
            odd = [u for u in self.uses if u.role in (INDEX, NONZERO, "unknown")]
            if odd:
                return f" feeding {odd[0].describe()}, where melt cannot tell which of its values are valid"
        return None

    def needs_range(self) -> str | None:
        """Why random integers need a range from the recipe, as a phrase (None: the graph gives one)."""
        if self.kind != "int":
            return None
        for u in self.uses:
            if u.role == "unknown":
                return f" feeding {u.describe()}, which melt does not know"
            if u.role == INDEX and not u.kept:
                return f" indexing {u.describe()}, changed on the way: melt cannot tell which values are in range"
            if u.role == INDEX and u.extent is None:
                return f" indexing {u.describe()}, an axis whose length the graph does not fix"
            if u.role == NONZERO and not u.kept:
                return f" dividing in {u.describe()}, changed on the way: melt cannot tell which values avoid 0"
        return None

    def safe_range(self) -> tuple[int, int, str]:
        """[low, high) of random integers the graph takes, and why."""
        low, high, why = 0, DEFAULT_INT_HIGH, "integers that only carry data"
        extents = [u for u in self.uses if u.role == INDEX and u.extent is not None]
        if extents:
            tightest = min(extents, key=lambda u: u.extent)
            high = tightest.extent
            why = f"indices into {tightest.describe()} (length {tightest.extent}: {tightest.extent_from})"
        if any(u.role == NONZERO for u in self.uses):
            low, why = 1, why + "; a divisor, so never 0"
        return low, high, why

    def hints(self) -> list:
        seen = []
        for u in self.uses:
            for h in u.hints:
                if h not in seen:
                    seen.append(h)
        return seen


def dims_text(shape: list | None) -> str:
    """'[batch, 16]'; '?' for a dimension of unknown size; 'of any shape' where the rank is unknown."""
    return "of any shape" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class ModelUnreadable(ValueError):
    """The file is not an ONNX model the onnx package can read."""


def _type_string(type_proto) -> str:
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        from onnx import helper

        name = helper.tensor_dtype_to_string(type_proto.tensor_type.elem_type).replace("TensorProto.", "").lower()
        return f"tensor({name})"  # as ONNX Runtime spells it: tensor(float), tensor(int64), ...
    if which == "sequence_type":
        return f"seq({_type_string(type_proto.sequence_type.elem_type)})"
    if which == "optional_type":
        return f"optional({_type_string(type_proto.optional_type.elem_type)})"
    if which == "map_type":
        return "map"
    return str(which)


def _declared_shape(type_proto) -> list | None:
    if type_proto.WhichOneof("value") != "tensor_type" or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in type_proto.tensor_type.shape.dim:
        which = d.WhichOneof("value")
        dims.append(d.dim_value if which == "dim_value" else d.dim_param if which == "dim_param" else None)
    return dims


class _Scope:
    """One graph (the main graph or a subgraph) with what the walk needs to look up in it."""

    def __init__(self, graph, parent: _Scope | None, owner=None):
        self.graph = graph
        self.parent = parent
        self.owner = owner  # the node whose attribute holds this graph
        self.inputs = [i.name for i in graph.input]
        self.outputs = [o.name for o in graph.output]
        self.initializers = {t.name: t for t in graph.initializer}
        self.constants = {}
        self.shapes = {}
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            shape = _declared_shape(vi.type)
            if shape is not None:
                self.shapes[vi.name] = shape
        self.consumers: dict[str, list[tuple[object, int]]] = {}
        self.captures: dict[str, list[tuple[object, _Scope]]] = {}
        self.defined = set(self.inputs) | set(self.initializers)
        for node in graph.node:
            self.defined.update(o for o in node.output if o)
            for pos, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, pos))
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
                tensor = _constant_tensor(node)
                if tensor is not None:
                    self.constants[node.output[0]] = tensor
        self.subgraphs: list[tuple[object, _Scope]] = []
        for node in graph.node:
            for a in node.attribute:
                for g in [a.g] if a.HasField("g") else list(a.graphs):
                    self.subgraphs.append((node, _Scope(g, self, node)))
        self.free = set()  # names used here (or deeper) that this graph does not define: outer-scope captures
        for node in graph.node:
            self.free.update(n for n in node.input if n and n not in self.defined)
        self.free.update(n for n in self.outputs if n not in self.defined)
        for node, sub in self.subgraphs:
            for name in sub.free:
                if name not in self.defined:
                    self.free.add(name)
                self.captures.setdefault(name, []).append((node, sub))

    def tensor(self, name: str):
        """The initializer or Constant of this name, looking outwards (lexical scope)."""
        scope = self
        while scope is not None:
            if name in scope.initializers:
                return scope.initializers[name]
            if name in scope.constants:
                return scope.constants[name]
            if name in scope.defined:
                return None
            scope = scope.parent
        return None

    def shape(self, name: str) -> tuple[list | None, str]:
        """Dims of a value and where they come from ('initializer emb', 'declared', 'inferred')."""
        scope = self
        while scope is not None:
            if name in scope.initializers or name in scope.constants:
                kind = "initializer" if name in scope.initializers else "Constant"
                return list(scope.tensor(name).dims), f"{kind} {name!r}"
            if name in scope.shapes:
                return scope.shapes[name], f"the shape of {name!r}"
            if name in scope.defined:
                return None, ""
            scope = scope.parent
        return None, ""


def _constant_tensor(node):
    """The tensor a Constant node holds (value, or value_int(s)/value_float(s): Operators.md, Constant-13)."""
    import numpy as np
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return a.t
        forms = {"value_int": (a.i, np.int64), "value_ints": (list(a.ints), np.int64),
                 "value_float": (a.f, np.float32), "value_floats": (list(a.floats), np.float32)}  # fmt: skip
        if a.name in forms:
            value, dtype = forms[a.name]
            return numpy_helper.from_array(np.array(value, dtype=dtype), node.output[0])
    return None


def _scalar_of(tensor) -> object | None:
    from onnx import numpy_helper

    try:
        arr = numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - external data not loaded, odd types: no hint then
        return None
    if arr.size != 1:
        return None
    item = arr.reshape(-1)[0].item()
    return item.decode() if isinstance(item, bytes) else item


class _Schemas:
    """Operand names of operators, from onnx.defs, at the model's opset versions."""

    def __init__(self, model):
        self.opsets = {(o.domain or ""): o.version for o in model.opset_import}
        self.local = {(f.domain, f.name) for f in model.functions}
        self.known: dict[tuple[str, str], tuple[list[str], bool] | None] = {}

    def operands(self, domain: str, op_type: str) -> tuple[list[str], bool] | None:
        """(names of formal inputs, whether the last is variadic); None for an operator onnx does not know."""
        from onnx import defs

        domain = "" if domain == "ai.onnx" else domain
        if (domain, op_type) not in self.known:
            try:
                if (domain, op_type) in self.local:  # a model-local function: its meaning is not in the spec
                    raise defs.SchemaError(op_type)
                formals = list(defs.get_schema(op_type, self.opsets.get(domain, 1), domain).inputs)
                variadic = bool(formals) and formals[-1].option == defs.OpSchema.FormalParameterOption.Variadic
                self.known[(domain, op_type)] = ([f.name for f in formals], variadic)
            except defs.SchemaError:  # a custom domain, or an operator newer than this onnx package
                self.known[(domain, op_type)] = None
        return self.known[(domain, op_type)]

    def operand_name(self, node, pos: int) -> str | None:
        known = self.operands(node.domain or "", node.op_type)
        if known is None:
            return None
        names, variadic = known
        if pos < len(names):
            return names[pos]
        return names[-1] if variadic and names else f"input {pos}"


def _op_label(node) -> str:
    domain = node.domain if node.domain not in ("", "ai.onnx") else ""
    return f"{domain}.{node.op_type}" if domain else node.op_type


def _index_extent(node, scope: _Scope) -> tuple[int | None, str]:
    """Size of the axis that `node`'s index operand points into, when the graph fixes it."""
    attrs = {a.name: a for a in node.attribute}
    op = node.op_type

    def dims_of(pos: int):
        return scope.shape(node.input[pos]) if pos < len(node.input) and node.input[pos] else (None, "")

    if op in ("Gather", "GatherElements", "Scatter", "ScatterElements"):
        dims, src = dims_of(0)
        axis = attrs["axis"].i if "axis" in attrs else 0
        if dims is None or not -len(dims) <= axis < len(dims):
            return None, ""
        d = dims[axis]
        return (d, f"axis {axis} of {src}") if isinstance(d, int) and d > 0 else (None, "")
    if op in ("GatherND", "ScatterND"):
        dims, src = dims_of(0)
        batch = attrs["batch_dims"].i if "batch_dims" in attrs else 0
        if dims is None:
            return None, ""
        rest = dims[batch:]
        if rest and all(isinstance(d, int) and d > 0 for d in rest):
            return min(rest), f"the smallest indexed dimension of {src}"  # one bound for every index column
        return None, ""
    if op == "RoiAlign":
        dims, src = dims_of(0)
        d = dims[0] if dims else None
        return (d, f"the batch of {src}") if isinstance(d, int) and d > 0 else (None, "")
    if op == "ArrayFeatureExtractor":
        dims, src = dims_of(0)
        d = dims[-1] if dims else None
        return (d, f"the last axis of {src}") if isinstance(d, int) and d > 0 else (None, "")
    if op == "RotaryEmbedding":
        dims, src = dims_of(1)  # cos_cache: [max_position_id + 1, rotary_dim / 2] when position_ids are given
        d = dims[0] if dims else None
        return (d, f"the rows of {src}") if isinstance(d, int) and d > 0 else (None, "")
    return None, ""


_FLOAT_TYPES = {
    1,
    10,
    11,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    23,
}  # TensorProto: float, float16, double, complex, bfloat16, float8s, float4


def _kind_after(node, kind: str) -> str:
    """Element kind of a node's outputs, given the kind of the operand followed."""
    if node.op_type in _TO_BOOL:
        return "bool"
    if node.op_type == "Cast":
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        return "str" if to == 8 else "bool" if to == 9 else "float" if to in _FLOAT_TYPES else "int"
    return kind


def _walk(top: _Scope, info: InputInfo, schemas: _Schemas) -> list[Use]:
    """Every operand the input's values reach (breadth first: the shortest path to each is kept)."""
    uses: list[Use] = []
    seen_uses: set[tuple] = set()
    queue = deque([(top, info.name, True, info.kind, (), ())])
    seen = set()

    def use(u: Use) -> None:
        key = (u.role, u.operand, u.kept, u.extent)
        if key not in seen_uses:
            seen_uses.add(key)
            uses.append(u)

    def push(scope, name, kept, kind, via, hints):
        if name:
            queue.append((scope, name, kept, kind, via, hints))

    while queue:
        scope, name, kept, kind, via, hints = queue.popleft()
        if (id(scope), name, kept, kind) in seen:
            continue
        seen.add((id(scope), name, kept, kind))
        for node, sub in scope.captures.get(name, []):
            push(sub, name, kept, kind, via + (f"{_op_label(node)} subgraph",), hints)
        if name in scope.outputs and scope.owner is not None:
            _leave_subgraph(scope, scope.outputs.index(name), kept, kind, via, hints, push, use)
        for node, pos in scope.consumers.get(name, []):
            label = _op_label(node)
            operand = schemas.operand_name(node, pos)
            if operand is None:  # an operator onnx does not define: its meaning is unknown here
                if kind in ("int", "bool", "str"):
                    use(Use("unknown", f"{label} input {pos}", via, kept, hints=hints))
                for out in node.output:
                    push(scope, out, False, kind, via + (label,), hints)
                continue
            domain = "" if node.domain in ("", "ai.onnx") else node.domain
            role = ROLES.get((domain, node.op_type), {}).get(operand)
            here = f"{label}.{operand}"
            if role == STEER:
                use(Use(STEER, here, via, kept, hints=hints))
                continue
            if role == INDEX:
                extent, src = _index_extent(node, scope)
                use(Use(INDEX, here, via, kept, extent if kept else None, src if kept else "", hints))
                continue
            if role == SHAPE_ONLY:
                continue
            if role == NONZERO and kind == "int":
                use(Use(NONZERO, here, via, kept, hints=hints))
            new_hints = hints
            if node.op_type in _COMPARE and len(node.input) == 2:
                other = scope.tensor(node.input[1 - pos])
                value = _scalar_of(other) if other is not None else None
                if value is not None:
                    new_hints = hints + (value,)
            if node.op_type in _BODY_OPS:
                _enter_body(node, pos, scope, kept, kind, via, new_hints, push)
                continue  # the body carries the value to the outputs (_leave_subgraph)
            out_kind = _kind_after(node, kind)
            for out in node.output:
                push(scope, out, kept and role == KEEP, out_kind, via + (label,), new_hints)
    return uses


def _enter_body(node, pos: int, scope: _Scope, kept, kind, via, hints, push) -> None:
    """An explicit operand of Loop/Scan/SequenceMap flows into the body input at the same position."""
    for owner, sub in scope.subgraphs:
        if owner is node and pos < len(sub.inputs):
            push(sub, sub.inputs[pos], kept, kind, via + (f"{node.op_type} body",), hints)


def _leave_subgraph(sub: _Scope, index: int, kept, kind, via, hints, push, use) -> None:
    """A body output carries the value out: to the owner's outputs (and a Loop body's condition steers)."""
    node = sub.owner
    parent = sub.parent
    label = f"{node.op_type} body"
    if node.op_type == "Loop":
        if index == 0:
            use(Use(STEER, "Loop body's condition output", via, kept, hints=hints))
            return
        if index < len(node.output) + 1:
            push(parent, node.output[index - 1], kept, kind, via + (label,), hints)
        carried = len(node.input) - 2
        if index <= carried and index + 1 < len(sub.inputs):
            push(sub, sub.inputs[index + 1], kept, kind, via + (label,), hints)  # next iteration's input
        return
    if node.op_type in ("If", "Scan", "SequenceMap") and index < len(node.output):
        push(parent, node.output[index], kept, kind, via + (label,), hints)
        return
    for out in node.output:  # an op melt does not map: every output may depend on it
        push(parent, out, False, kind, via + (label,), hints)


def _load(path: str):
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelUnreadable(f"{type(e).__name__}: {e}") from None
    if not model.graph.node and not model.graph.input:
        raise ModelUnreadable("no graph in the file")
    return model


def _infer(model):
    """The model with inferred shapes where onnx can infer them (custom ops: partly; > 2 GB: not at all)."""
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is an aid for index extents, never required
        return model


@functools.lru_cache(maxsize=32)
def _inspect_cached(path: str, size: int, mtime_ns: int) -> tuple[InputInfo, ...]:
    model = _load(path)
    init_names = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]  # initializers listed as inputs are not fed
    if any(i.type.tensor_type.elem_type not in (1, 10, 11) for i in inputs):
        model = _infer(model)  # index extents may need inferred shapes; float-only models need nothing
    schemas = _Schemas(model)
    top = _Scope(model.graph, None)
    infos = []
    for vi in inputs:
        elem = vi.type.tensor_type.elem_type if vi.type.WhichOneof("value") == "tensor_type" else None
        info = InputInfo(vi.name, _type_string(vi.type), FEEDABLE.get(elem), _declared_shape(vi.type))
        if info.dtype is not None:
            info.uses = _walk(top, info, schemas)
        infos.append(info)
    return tuple(infos)


def inspect(path: str | Path) -> list[InputInfo]:
    """The inputs ONNX Runtime will ask for, in order, each classified. Raises ModelUnreadable.

    Graph inputs that an initializer of the same name backs are left out: ONNX Runtime does not
    ask for them (IR >= 4 treats them as overridable defaults).
    """
    st = os.stat(path)
    return list(_inspect_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns))
