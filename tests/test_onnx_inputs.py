"""ONNX inputs that steer a model get a value from the recipe, never random numbers.

Generated graphs (written with the `onnx` package) exercise each rule: scalars of every dtype,
integer inputs feeding shape, index and control operands directly, through value-preserving ops,
through arithmetic and inside If/Loop/Scan bodies; integer inputs that only carry data; indices
with a range the graph fixes; strings and bools with values; values of the wrong rank, dims or type.
Feeds are planned on the host (melt/onnx_feeds.py) and built by the device code
(melt/runtimes/onnxruntime.py) on the real ONNX Runtime, through JSON as case.json carries them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_models import write_graph

from melt.onnx_feeds import model_feeds
from melt.onnx_graph import inspect

I64, I32, F32, BOOL = TensorProto.INT64, TensorProto.INT32, TensorProto.FLOAT, TensorProto.BOOL


def vi(name: str, elem: int, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def const(name: str, value, dtype=np.int64):
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def node(op: str, inputs: list[str], outputs: list[str], **attrs):
    return helper.make_node(op, inputs, outputs, **attrs)


def graph(path, nodes, inputs, outputs, inits=(), **kw):
    """write_graph without onnx's checker, which wants every output's shape; ONNX Runtime, which
    loads each graph that a test runs, is the judge of validity here."""
    return write_graph(path, nodes, inputs, outputs, list(inits), **{"check": False, **kw})


def write_typed(path, nodes, inputs, inits=(), outputs=None):
    """A graph whose outputs (the last node's, by default) get the element types onnx infers for them."""
    from onnx import shape_inference

    names = outputs or [o for o in nodes[-1].output if o]
    untyped = helper.make_graph(nodes, "g", inputs, [vi(o, TensorProto.UNDEFINED, None) for o in names], list(inits))
    model = helper.make_model(untyped, opset_imports=[helper.make_opsetid("", 17)])
    inferred = {v.name: v.type.tensor_type.elem_type for v in shape_inference.infer_shapes(model).graph.value_info}
    inferred.update({v.name: v.type.tensor_type.elem_type for v in shape_inference.infer_shapes(model).graph.output})
    return graph(path, nodes, inputs, [vi(o, inferred[o] or F32, None) for o in names], list(inits))


def run_feeds(path, feeds: list[dict]):
    """The device side: arrays from the feeds (as case.json carries them), one real inference."""
    import onnxruntime as ort

    from melt.runtimes.onnxruntime import build_inputs

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = build_inputs(sess.get_inputs(), json.loads(json.dumps(feeds)))
    return sess.run(None, arrays), arrays


def problems_of(path, inputs: dict, seed: int = 0) -> dict[str, str]:
    feeds, problems = model_feeds(path, inputs, seed)
    return {p.name: f"expected {p.expected}, found {p.found}" for p in problems}


def planned(path, inputs: dict, seed: int = 0) -> dict[str, dict]:
    feeds, problems = model_feeds(path, inputs, seed)
    assert not problems, problems
    return {f["name"]: f for f in feeds}


# ------------------------------------------------------------------------------------------------
# Scalars of every dtype: always a value, used whatever the dtype
# ------------------------------------------------------------------------------------------------

SCALARS = [
    (TensorProto.FLOAT, "float32", 1.5),
    (TensorProto.FLOAT16, "float16", 0.5),
    (TensorProto.DOUBLE, "float64", 2.25),
    (TensorProto.INT8, "int8", -3),
    (TensorProto.INT16, "int16", 300),
    (TensorProto.INT32, "int32", -70000),
    (TensorProto.INT64, "int64", 16000),
    (TensorProto.UINT8, "uint8", 200),
    (TensorProto.UINT16, "uint16", 60000),
    (TensorProto.UINT32, "uint32", 4_000_000_000),
    (TensorProto.UINT64, "uint64", 2**63 + 5),
    (TensorProto.BOOL, "bool", True),
    (TensorProto.STRING, "str", "hello"),
]


@pytest.mark.parametrize("elem, dtype, value", SCALARS, ids=[s[1] for s in SCALARS])
def test_a_scalar_of_any_dtype_needs_a_value_and_the_value_is_used(tmp_path, elem, dtype, value):
    path = graph(tmp_path / "s.onnx", [node("Identity", ["s"], ["y"])], [vi("s", elem, [])], [vi("y", elem, [])])
    (info,) = inspect(path)
    assert info.dtype == dtype and info.rank == 0 and info.needs_value()
    missing = problems_of(path, {})
    assert (
        "workload.inputs.s.value" in missing["s"]
        and f"scalar {dtype}" in missing["s"]
        and "never random" in missing["s"]
    )
    as_random = problems_of(path, {"s": {"shape": []}})
    assert "shape [] (random data)" in as_random["s"]
    feeds = planned(path, {"s": {"value": value}})
    assert feeds["s"]["fill"] == "value" and feeds["s"]["needs_value"] and feeds["s"]["shape"] == []
    (y,), arrays = run_feeds(path, list(feeds.values()))
    assert arrays["s"].shape == () and y.shape == ()
    assert (y.item().decode() if isinstance(y.item(), bytes) else y.item()) == value


# ------------------------------------------------------------------------------------------------
# Integer (and bool, and float) inputs that steer: shapes, axes, counts, branches
# ------------------------------------------------------------------------------------------------


def _branches(out: str):
    then = helper.make_graph([node("Identity", ["x"], [f"t_{out}"])], "then", [], [vi(f"t_{out}", F32, None)])
    other = helper.make_graph([node("Neg", ["x"], [f"e_{out}"])], "else", [], [vi(f"e_{out}", F32, None)])
    return then, other


def _nms():
    boxes = const("boxes", [[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32)
    scores = const("scores", [[[0.9, 0.8, 0.7]]], np.float32)
    return [boxes, scores]


# (id, control input, its declared shape, nodes, extra initializers, data input x shape, good value, operand named)
STEERING = [
    ("reshape", ("c", I64, [3]), [node("Reshape", ["x", "c"], ["y"])], [], [2, 3, 4], [4, 3, 2], "Reshape.shape"),
    ("expand", ("c", I64, [2]), [node("Expand", ["x", "c"], ["y"])], [], [1, 4], [3, 4], "Expand.shape"),
    ("tile", ("c", I64, [2]), [node("Tile", ["x", "c"], ["y"])], [], [2, 3], [2, 1], "Tile.repeats"),
    ("slice-starts", ("c", I64, [1]), [node("Slice", ["x", "c", "e"], ["y"])], [const("e", [8])], [10], [2],
     "Slice.starts"),
    ("slice-ends", ("c", I64, [1]), [node("Slice", ["x", "s", "c"], ["y"])], [const("s", [1])], [10], [5],
     "Slice.ends"),
    ("slice-axes", ("c", I64, [1]), [node("Slice", ["x", "s", "e", "c"], ["y"])], [const("s", [0]), const("e", [1])],
     [3, 4], [1], "Slice.axes"),
    ("slice-steps", ("c", I64, [1]), [node("Slice", ["x", "s", "e", "a", "c"], ["y"])],
     [const("s", [0]), const("e", [10]), const("a", [0])], [10], [3], "Slice.steps"),
    ("constant-of-shape", ("c", I64, [2]), [node("ConstantOfShape", ["c"], ["y"])], [], None, [2, 3],
     "ConstantOfShape.input"),
    ("range-limit", ("c", I64, []), [node("Range", ["z", "c", "one"], ["y"])], [const("z", 0), const("one", 1)],
     None, 5, "Range.limit"),
    ("topk", ("c", I64, [1]), [node("TopK", ["x", "c"], ["y", "idx"])], [], [10], [3], "TopK.K"),
    ("onehot-depth", ("c", I64, [1]), [node("OneHot", ["ind", "c", "vals"], ["y"])],
     [const("ind", [0, 2]), const("vals", [0, 1], np.float32)], None, [4], "OneHot.depth"),
    ("pad", ("c", I64, [4]), [node("Pad", ["x", "c"], ["y"])], [], [2, 3], [1, 0, 1, 2], "Pad.pads"),
    ("unsqueeze", ("c", I64, [1]), [node("Unsqueeze", ["x", "c"], ["y"])], [], [2, 3], [0], "Unsqueeze.axes"),
    ("squeeze", ("c", I64, [1]), [node("Squeeze", ["x", "c"], ["y"])], [], [2, 1, 3], [1], "Squeeze.axes"),
    ("reduce-sum", ("c", I64, [1]), [node("ReduceSum", ["x", "c"], ["y"])], [], [2, 3], [1], "ReduceSum.axes"),
    ("split", ("c", I64, [2]), [node("Split", ["x", "c"], ["y", "y2"])], [], [6], [2, 4], "Split.split"),
    ("resize-sizes", ("c", I64, [4]), [node("Resize", ["x", "", "", "c"], ["y"])], [], [1, 1, 4, 4], [1, 1, 8, 8],
     "Resize.sizes"),
    ("resize-scales", ("c", F32, [4]), [node("Resize", ["x", "", "c"], ["y"])], [], [1, 1, 4, 4],
     [1.0, 1.0, 2.0, 2.0], "Resize.scales"),
    ("cumsum-axis", ("c", I64, []), [node("CumSum", ["x", "c"], ["y"])], [], [2, 3], 1, "CumSum.axis"),
    ("trilu-k", ("c", I64, []), [node("Trilu", ["x", "c"], ["y"])], [], [3, 3], 1, "Trilu.k"),
    ("if-cond", ("c", BOOL, [1]), [node("If", ["c"], ["y"], then_branch=_branches("y")[0],
                                        else_branch=_branches("y")[1])], [], [2], [True], "If.cond"),
    ("loop-trip-count", ("c", I64, []),
     [node("Loop", ["c", "", "x"], ["y"], body=helper.make_graph(
         [node("Identity", ["cond_in"], ["cond_out"]), node("Neg", ["v"], ["v_out"])], "body",
         [vi("i", I64, []), vi("cond_in", BOOL, []), vi("v", F32, None)],
         [vi("cond_out", BOOL, []), vi("v_out", F32, None)]))], [], [2], 3, "Loop.M"),
    ("loop-cond", ("c", BOOL, []),
     [node("Loop", ["m", "c", "x"], ["y"], body=helper.make_graph(
         [node("Identity", ["cond_in"], ["cond_out"]), node("Neg", ["v"], ["v_out"])], "body",
         [vi("i", I64, []), vi("cond_in", BOOL, []), vi("v", F32, None)],
         [vi("cond_out", BOOL, []), vi("v_out", F32, None)]))], [const("m", 2)], [2], True, "Loop.cond"),
    ("compress", ("c", BOOL, [4]), [node("Compress", ["x", "c"], ["y"], axis=0)], [], [4],
     [True, False, True, True], "Compress.condition"),
    ("dropout-training-mode", ("c", BOOL, []), [node("Dropout", ["x", "", "c"], ["y"])], [], [4], False,
     "Dropout.training_mode"),
    ("nms-max-boxes", ("c", I64, [1]), [node("NonMaxSuppression", ["boxes", "scores", "c"], ["y"])], _nms(), None,
     [2], "NonMaxSuppression.max_output_boxes_per_class"),
]  # fmt: skip


def _steering_graph(tmp_path, control, nodes, inits, x_shape):
    name, elem, shape = control
    inputs = ([vi("x", F32, x_shape)] if x_shape is not None else []) + [vi(name, elem, shape)]
    return write_typed(tmp_path / "g.onnx", nodes, inputs, inits)


@pytest.mark.parametrize(
    "control, nodes, inits, x_shape, value, operand", [s[1:] for s in STEERING], ids=[s[0] for s in STEERING]
)
def test_an_input_feeding_a_steering_operand_needs_a_value(tmp_path, control, nodes, inits, x_shape, value, operand):
    path = _steering_graph(tmp_path, control, nodes, inits, x_shape)
    x = {"x": {"shape": x_shape}} if x_shape is not None else {}
    missing = problems_of(path, x)
    assert list(missing) == ["c"], missing
    assert f"feeding {operand}" in missing["c"] and "workload.inputs.c.value" in missing["c"], missing["c"]
    assert "never random" in missing["c"] and "found nothing" in missing["c"]
    shaped = control[2] or [1]
    assert "(random data)" in problems_of(path, {**x, "c": {"shape": shaped}})["c"]
    feeds = planned(path, {**x, "c": {"value": value}})
    assert feeds["c"]["fill"] == "value" and feeds["c"]["needs_value"] and operand in feeds["c"]["why"]
    if x_shape is not None:
        assert feeds["x"]["fill"] == "random" and feeds["x"]["distribution"] == "normal"
    outputs, _ = run_feeds(path, list(feeds.values()))  # the given value is one the runtime takes
    assert outputs


def test_the_steering_table_names_real_operands():
    """Every operand melt names is an operand of that operator in the ONNX spec (onnx.defs), at some version."""
    from onnx import defs

    from melt.onnx_graph import ROLES

    for (domain, op), operands in ROLES.items():
        names = set()
        for version in range(1, defs.onnx_opset_version() + 1):
            try:
                names.update(f.name for f in defs.get_schema(op, version, domain).inputs)
            except defs.SchemaError:
                continue
        assert names, f"{domain}.{op} is not an ONNX operator"
        assert set(operands) <= names, f"{op}: {set(operands) - names} are not its operands ({sorted(names)})"


# Values reach a steering operand through other ops
VIA = [
    (
        "cast-concat-reshape",
        [vi("x", F32, [2, 3, 4]), vi("c", I32, [2])],
        [node("Cast", ["c"], ["c64"], to=I64), node("Concat", ["c64", "minus1"], ["shape"], axis=0),
         node("Reshape", ["x", "shape"], ["y"])],
        [const("minus1", [-1])], {"x": {"shape": [2, 3, 4]}}, [2, 3], "Reshape.shape via Cast, Concat",
    ),
    (
        "add-expand",
        [vi("x", F32, [1, 4]), vi("c", I64, [2])],
        [node("Add", ["c", "ones"], ["shape"]), node("Expand", ["x", "shape"], ["y"])],
        [const("ones", [1, 0])], {"x": {"shape": [1, 4]}}, [2, 4], "Expand.shape via Add",
    ),
    (
        "equal-if",  # Silero VAD's pattern, with a [1] input rather than a scalar: the use decides, not the rank
        [vi("x", F32, [2]), vi("c", I64, [1])],
        [node("Equal", ["c", "k16"], ["is16"]),
         node("If", ["is16"], ["y"], then_branch=_branches("y")[0], else_branch=_branches("y")[1])],
        [const("k16", [16000])], {"x": {"shape": [2]}}, [16000], "If.cond via Equal",
    ),
    (
        "captured-in-a-branch",  # an If branch reads the outer name c
        [vi("x", F32, [2, 3]), vi("c", I64, [2])],
        [node("If", ["yes"], ["y"],
              then_branch=helper.make_graph([node("Reshape", ["x", "c"], ["t"])], "then", [], [vi("t", F32, None)]),
              else_branch=helper.make_graph([node("Identity", ["x"], ["e"])], "else", [], [vi("e", F32, None)]))],
        [const("yes", True, np.bool_)], {"x": {"shape": [2, 3]}}, [3, 2], "Reshape.shape via If subgraph",
    ),
    (
        "loop-carried",  # c enters the Loop body as a carried value and shapes a Reshape there
        [vi("x", F32, [6]), vi("c", I64, [2])],
        [node("Loop", ["two", "", "c"], ["c_out", "ys"], body=helper.make_graph(
            [node("Identity", ["cond_in"], ["cond_out"]), node("Identity", ["v"], ["v_out"]),
             node("Reshape", ["x", "v"], ["scan"])], "body",
            [vi("i", I64, []), vi("cond_in", BOOL, []), vi("v", I64, [2])],
            [vi("cond_out", BOOL, []), vi("v_out", I64, [2]), vi("scan", F32, None)]))],
        [const("two", 2)], {"x": {"shape": [6]}}, [2, 3], "Reshape.shape via Loop body",
    ),
    (
        "loop-condition-output",  # the body's condition output depends on c: c decides the trip count
        [vi("x", F32, [2]), vi("c", I64, [])],
        [node("Loop", ["ten", "", "x"], ["y"], body=helper.make_graph(
            [node("Less", ["i", "c"], ["cond_out"]), node("Neg", ["v"], ["v_out"])], "body",
            [vi("i", I64, []), vi("cond_in", BOOL, []), vi("v", F32, None)],
            [vi("cond_out", BOOL, []), vi("v_out", F32, None)]))],
        [const("ten", 10)], {"x": {"shape": [2]}}, 3, "Loop body's condition output via Loop subgraph, Less",
    ),
    (
        "scan-rows",  # Scan hands c's rows to its body, which reshapes with them
        [vi("x", F32, [6]), vi("c", I64, [2, 2])],
        [node("Scan", ["c"], ["ys"], num_scan_inputs=1, body=helper.make_graph(
            [node("Reshape", ["x", "row"], ["r"]), node("ReduceSum", ["r"], ["s"], keepdims=0)], "body",
            [vi("row", I64, [2])], [vi("s", F32, [])]))],
        [], {"x": {"shape": [6]}}, [[2, 3], [3, 2]], "Reshape.shape via Scan body",
    ),
]  # fmt: skip


@pytest.mark.parametrize("inputs, nodes, inits, given, value, operand", [v[1:] for v in VIA], ids=[v[0] for v in VIA])
def test_steering_is_followed_through_other_ops_and_subgraphs(tmp_path, inputs, nodes, inits, given, value, operand):
    path = write_typed(tmp_path / "g.onnx", nodes, inputs, inits)
    missing = problems_of(path, given)
    assert list(missing) == ["c"] and f"feeding {operand}" in missing["c"], missing
    feeds = planned(path, {**given, "c": {"value": value}})
    assert run_feeds(path, list(feeds.values()))[0]


def test_a_constant_compared_on_the_way_is_offered_as_an_example(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Equal", ["sr", "k16"], ["is16"]),
         node("If", ["is16"], ["y"], then_branch=_branches("y")[0], else_branch=_branches("y")[1])],
        [vi("x", F32, [2]), vi("sr", I64, [])], [vi("y", F32, None)], [const("k16", 16000)],
    )  # fmt: skip
    msg = problems_of(path, {"x": {"shape": [2]}})["sr"]
    assert msg.startswith(
        "expected workload.inputs.sr.value (e.g. 16000): sr is scalar int64 feeding If.cond via Equal"
    )


def test_a_constant_node_in_any_form_gives_the_example(tmp_path):
    k16 = helper.make_node("Constant", [], ["k16"], value_int=8000)
    path = graph(
        tmp_path / "g.onnx",
        [k16, node("Equal", ["sr", "k16"], ["is8"]),
         node("If", ["is8"], ["y"], then_branch=_branches("y")[0], else_branch=_branches("y")[1])],
        [vi("x", F32, [2]), vi("sr", I64, [])], [vi("y", F32, None)],
    )  # fmt: skip
    assert "(e.g. 8000)" in problems_of(path, {"x": {"shape": [2]}})["sr"]


def test_a_float_turned_into_indices_needs_a_value(tmp_path):
    """Random floats cast to integers could land anywhere: no random data for them."""
    path = graph(
        tmp_path / "g.onnx",
        [node("Cast", ["pos"], ["i"], to=I64), node("Gather", ["emb", "i"], ["y"])],
        [vi("pos", F32, [3])],
        [vi("y", F32, None)],
        [const("emb", np.zeros((4, 2)), np.float32)],
    )
    msg = problems_of(path, {})["pos"]
    assert "workload.inputs.pos.value" in msg and "feeding Gather.indices via Cast" in msg
    assert run_feeds(path, list(planned(path, {"pos": {"value": [0.0, 3.0, 1.0]}}).values()))[0][0].shape == (3, 2)


def test_an_input_of_unknown_rank_takes_the_recipes_shape(tmp_path):
    """ONNX Runtime reports [] for an input of unknown rank, as for a scalar: the host's plan tells them apart."""
    path = graph(tmp_path / "g.onnx", [node("Identity", ["x"], ["y"])], [vi("x", F32, None)], [vi("y", F32, None)])
    assert "x is float32 of any shape; the recipe fixes its open dimensions" in problems_of(path, {})["x"]
    feeds = planned(path, {"x": {"shape": [2, 5]}})
    assert feeds["x"]["declared"] is None and feeds["x"]["fill"] == "random"
    assert run_feeds(path, list(feeds.values()))[0][0].shape == (2, 5)


def test_an_input_read_only_for_its_shape_carries_data(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Shape", ["c"], ["shape"]), node("Reshape", ["x", "shape"], ["y"])],
        [vi("x", F32, [6]), vi("c", I64, [2, 3])],
        [vi("y", F32, [2, 3])],
    )
    feeds = planned(path, {"x": {"shape": [6]}})
    assert feeds["c"]["fill"] == "random" and not feeds["c"]["needs_value"]
    assert (feeds["c"]["low"], feeds["c"]["high"]) == (0, 100)
    (y,), _ = run_feeds(path, list(feeds.values()))
    assert y.shape == (2, 3)


# ------------------------------------------------------------------------------------------------
# Indices carry data, within the range the graph fixes
# ------------------------------------------------------------------------------------------------


def _embedding(tmp_path, ids_elem=I64, pre=(), extra_inits=(), axis=0, table=(50, 8)):
    emb = numpy_helper.from_array(np.random.default_rng(0).standard_normal(table).astype(np.float32), "emb")
    nodes = [*pre, node("Gather", ["emb", "idx"], ["y"], axis=axis)]
    if not pre:
        nodes[-1].input[1] = "ids"
    return graph(
        tmp_path / "emb.onnx",
        nodes,
        [vi("ids", ids_elem, ["batch", "seq"])],
        [vi("y", F32, None)],
        [emb, *extra_inits],
    )


def test_token_ids_into_an_embedding_are_random_within_the_vocabulary(tmp_path):
    path = _embedding(tmp_path)
    feeds = planned(path, {"ids": {"shape": [4, 300]}}, seed=7)
    ids = feeds["ids"]
    assert (ids["fill"], ids["distribution"], ids["low"], ids["high"], ids["seed"]) == (
        "random",
        "integers",
        0,
        50,
        [7, 0],
    )
    assert "Gather.indices" in ids["why"] and "50" in ids["why"] and "'emb'" in ids["why"]
    (y,), arrays = run_feeds(path, [ids])
    assert arrays["ids"].dtype == np.int64 and arrays["ids"].min() >= 0 and arrays["ids"].max() < 50
    assert arrays["ids"].max() >= 40  # the whole vocabulary is drawn from, not a corner of it
    assert y.shape == (4, 300, 8)
    again = run_feeds(path, [planned(path, {"ids": {"shape": [4, 300]}}, seed=7)["ids"]])[1]
    assert (again["ids"] == arrays["ids"]).all()  # the seed fixes the data


def test_indices_keep_their_range_through_value_preserving_ops(tmp_path):
    pre = [node("Cast", ["ids"], ["i64"], to=I64), node("Reshape", ["i64", "flat"], ["idx"])]
    path = _embedding(tmp_path, I32, pre, [const("flat", [-1])])
    feeds = planned(path, {"ids": {"shape": [2, 5]}})
    assert (feeds["ids"]["low"], feeds["ids"]["high"]) == (0, 50) and "via Cast, Reshape" in feeds["ids"]["why"]
    assert run_feeds(path, list(feeds.values()))[0][0].shape == (10, 8)


def test_the_axis_gathered_on_gives_the_range(tmp_path):
    path = _embedding(tmp_path, axis=1, table=(8, 30))
    assert planned(path, {"ids": {"shape": [2, 3]}})["ids"]["high"] == 30


def test_indices_into_two_tables_take_the_smaller(tmp_path):
    small = numpy_helper.from_array(np.zeros((20, 8), np.float32), "small")
    path = _embedding(tmp_path, pre=[node("Gather", ["small", "ids"], ["z"]), node("Identity", ["ids"], ["idx"])],
                      extra_inits=[small])  # fmt: skip
    assert planned(path, {"ids": {"shape": [2, 3]}})["ids"]["high"] == 20


def test_indices_changed_by_arithmetic_need_a_range_or_a_value(tmp_path):
    path = _embedding(tmp_path, pre=[node("Add", ["ids", "one"], ["idx"])], extra_inits=[const("one", 1)])
    msg = problems_of(path, {"ids": {"shape": [2, 3]}})["ids"]
    assert "workload.inputs.ids.range [low, high) or workload.inputs.ids.value" in msg
    assert "indexing Gather.indices via Add, changed on the way" in msg
    feeds = planned(path, {"ids": {"shape": [2, 3], "range": [0, 49]}})
    assert (feeds["ids"]["low"], feeds["ids"]["high"], feeds["ids"]["why"]) == (0, 49, "the recipe's range")
    arrays = run_feeds(path, list(feeds.values()))[1]
    assert arrays["ids"].max() < 49
    assert planned(path, {"ids": {"value": [[1, 2, 3]]}})["ids"]["value"] == [[1, 2, 3]]


def test_a_recipe_range_outside_the_graphs_range_is_refused(tmp_path):
    path = _embedding(tmp_path)
    msg = problems_of(path, {"ids": {"shape": [2, 3], "range": [0, 60]}})["ids"]
    assert "a range inside [0, 50)" in msg and "range [0, 60]" in msg
    assert planned(path, {"ids": {"shape": [2, 3], "range": [10, 20]}})["ids"]["high"] == 20
    assert "low < high" in problems_of(path, {"ids": {"shape": [2, 3], "range": [5, 5]}})["ids"]


INDEXED = [
    ("gather-declared-dim", [vi("table", F32, [10, 4]), vi("ids", I64, [3])], [node("Gather", ["table", "ids"], ["y"])],
     [], 10),
    ("gather-elements", [vi("ids", I64, [4, 3])], [node("GatherElements", ["data", "ids"], ["y"], axis=1)],
     [numpy_helper.from_array(np.zeros((4, 6), np.float32), "data")], 6),
    ("gather-nd", [vi("ids", I64, [3, 2])], [node("GatherND", ["data", "ids"], ["y"])],
     [numpy_helper.from_array(np.zeros((5, 7), np.float32), "data")], 5),
    ("scatter-elements", [vi("data", F32, [5]), vi("ids", I64, [3])],
     [node("ScatterElements", ["data", "ids", "upd"], ["y"])], [const("upd", [1, 2, 3], np.float32)], 5),
    ("inferred-shape", [vi("ids", I64, [3])],  # the table is a MatMul's output: its shape is inferred
     [node("MatMul", ["a", "b"], ["table"]), node("Gather", ["table", "ids"], ["y"])],
     [const("a", np.ones((9, 2)), np.float32), const("b", np.ones((2, 3)), np.float32)], 9),
]  # fmt: skip


@pytest.mark.parametrize("inputs, nodes, inits, extent", [i[1:] for i in INDEXED], ids=[i[0] for i in INDEXED])
def test_index_operands_take_the_extent_of_what_they_index(tmp_path, inputs, nodes, inits, extent):
    path = graph(tmp_path / "g.onnx", nodes, inputs, [vi("y", F32, None)], inits)
    feeds = planned(path, {})
    assert (feeds["ids"]["low"], feeds["ids"]["high"]) == (0, extent), feeds["ids"]
    assert run_feeds(path, list(feeds.values()))[0]


def test_indices_into_an_axis_of_open_length_need_a_range(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Gather", ["table", "ids"], ["y"])],
        [vi("table", F32, ["rows", 4]), vi("ids", I64, [3])],
        [vi("y", F32, None)],
    )
    msg = problems_of(path, {"table": {"shape": [6, 4]}})["ids"]
    assert "an axis whose length the graph does not fix" in msg and "range" in msg
    feeds = planned(path, {"table": {"shape": [6, 4]}, "ids": {"range": [0, 6]}})
    assert run_feeds(path, list(feeds.values()))[0][0].shape == (3, 4)


# ------------------------------------------------------------------------------------------------
# Integers that only carry data; divisors; operators melt does not know
# ------------------------------------------------------------------------------------------------


def test_integers_that_only_carry_data_are_random_in_the_default_range(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Cast", ["c"], ["cf"], to=F32), node("Add", ["x", "cf"], ["y"])],
        [vi("x", F32, [2, 3]), vi("c", I64, [2, 3])],
        [vi("y", F32, [2, 3])],
    )
    feeds = planned(path, {})
    assert feeds["c"]["distribution"] == "integers" and (feeds["c"]["low"], feeds["c"]["high"]) == (0, 100)
    assert feeds["c"]["why"] == "integers that only carry data" and not feeds["c"]["needs_value"]
    assert feeds["x"]["seed"] == [0, 0] and feeds["c"]["seed"] == [0, 1]
    (y,), arrays = run_feeds(path, list(feeds.values()))
    assert np.allclose(y, arrays["x"] + arrays["c"])


def test_an_integer_divisor_is_never_zero(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Div", ["a", "b"], ["y"])],
        [vi("a", I64, [64]), vi("b", I64, [64])],
        [vi("y", I64, [64])],
    )
    feeds = planned(path, {})
    assert feeds["a"]["low"] == 0 and feeds["b"]["low"] == 1 and "never 0" in feeds["b"]["why"]
    arrays = run_feeds(path, list(feeds.values()))[1]
    assert arrays["b"].min() >= 1


def test_an_integer_divisor_changed_on_the_way_needs_a_range(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Sub", ["b", "one"], ["b1"]), node("Div", ["a", "b1"], ["y"])],
        [vi("a", I64, [4]), vi("b", I64, [4])],
        [vi("y", I64, [4])],
        [const("one", 1)],
    )
    assert "dividing in Div.B via Sub" in problems_of(path, {})["b"]
    assert planned(path, {"b": {"range": [2, 9]}})["b"]["low"] == 2


def test_a_float_divisor_is_plain_data(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Div", ["a", "b"], ["y"])],
        [vi("a", F32, [4]), vi("b", F32, [4])],
        [vi("y", F32, [4])],
    )
    assert planned(path, {})["b"]["distribution"] == "normal"


def test_an_operator_melt_does_not_know_gets_no_random_integers(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Mystery", ["ids", "mask", "x"], ["y"], domain="com.example")],
        [vi("ids", I64, [1, 8]), vi("mask", BOOL, [1, 8]), vi("x", F32, [1, 8])],
        [vi("y", F32, None)],
        domains={"com.example": 1},
    )
    found = problems_of(path, {})
    assert set(found) == {"ids", "mask"}  # the float input is data whatever the op
    assert "feeding com.example.Mystery input 0, which melt does not know" in found["ids"] and "range" in found["ids"]
    assert "com.example.Mystery input 1" in found["mask"] and "workload.inputs.mask.value" in found["mask"]
    feeds = planned(path, {"ids": {"range": [0, 1000]}, "mask": {"value": [[True] * 8]}})
    assert feeds["ids"]["high"] == 1000 and feeds["x"]["distribution"] == "normal"


# ------------------------------------------------------------------------------------------------
# Strings and bools; values checked against the declared type, rank and fixed dimensions
# ------------------------------------------------------------------------------------------------


def test_string_inputs_take_their_value(tmp_path):
    path = graph(
        tmp_path / "g.onnx", [node("Identity", ["text"], ["y"])], [vi("text", TensorProto.STRING, [2])],
        [vi("y", TensorProto.STRING, [2])],
    )  # fmt: skip
    assert "melt cannot make up text" in problems_of(path, {"text": {"shape": [2]}})["text"]
    feeds = planned(path, {"text": {"value": ["hello", "wörld"]}})
    (y,), _ = run_feeds(path, list(feeds.values()))
    assert [v.decode() if isinstance(v, bytes) else v for v in y.tolist()] == ["hello", "wörld"]
    assert "takes strings (quote them in YAML)" in problems_of(path, {"text": {"value": [1, 2]}})["text"]


def test_bool_inputs_take_their_value_or_random_when_they_carry_data(tmp_path):
    path = graph(tmp_path / "g.onnx", [node("Not", ["flags"], ["y"])], [vi("flags", BOOL, [3])], [vi("y", BOOL, [3])])
    (y,), _ = run_feeds(path, list(planned(path, {"flags": {"value": [True, False, True]}}).values()))
    assert y.tolist() == [False, True, False]
    feeds = planned(path, {})
    assert (feeds["flags"]["distribution"], feeds["flags"]["p"]) == ("bernoulli", 0.5)
    assert run_feeds(path, list(feeds.values()))[1]["flags"].dtype == np.bool_
    assert "takes true or false" in problems_of(path, {"flags": {"value": [1, 0, 1]}})["flags"]


BAD_VALUES = [
    ("list-for-a-scalar", [vi("v", I64, [])], {"v": {"value": [1, 2]}},
     "a value of shape [2], where the model declares []"),
    ("wrong-fixed-dim", [vi("v", F32, [2, 4])], {"v": {"value": [[1, 2, 3], [4, 5, 6]]}},
     "a value of shape [2, 3], where the model declares [2, 4]"),
    ("wrong-rank", [vi("v", F32, ["n", 2])], {"v": {"value": [1.0, 2.0]}},
     "a value of shape [2], where the model declares [n, 2]"),
    ("scalar-for-three", [vi("v", I64, [3])], {"v": {"value": 5}}, "a value of shape [], where the model declares [3]"),
    ("ragged", [vi("v", I64, [2, "n"])], {"v": {"value": [[1, 2], [3]]}}, "a ragged list"),
    ("fraction-for-int", [vi("v", I64, [])], {"v": {"value": 1.5}}, "1.5 (float): scalar int64 takes integers"),
    ("bool-for-int", [vi("v", I64, [])], {"v": {"value": True}}, "True (bool): scalar int64 takes integers"),
    ("int8-overflow", [vi("v", TensorProto.INT8, [])], {"v": {"value": 300}}, "300: outside int8 [-128, 127]"),
    ("negative-unsigned", [vi("v", TensorProto.UINT8, [1])], {"v": {"value": [-1]}}, "-1: outside uint8 [0, 255]"),
    ("string-for-float", [vi("v", F32, [])], {"v": {"value": "one"}}, "'one' (str): scalar float32 takes numbers"),
    ("shape-wrong-rank", [vi("v", F32, ["batch", 16])], {"v": {"shape": [1, 16, 2]}},
     "expected a shape that fits float32 [batch, 16], found shape [1, 16, 2]"),
    ("shape-wrong-fixed-dim", [vi("v", F32, ["batch", 16])], {"v": {"shape": [1, 8]}}, "found shape [1, 8]"),
    ("open-dims-without-shape", [vi("v", F32, ["batch", 16])], {},
     "expected workload.inputs.v.shape: v is float32 [batch, 16]; the recipe fixes its open dimensions, found nothing"),
    ("range-for-floats", [vi("v", F32, [2])], {"v": {"range": [0, 3]}}, "no range: v is float32 [2]"),
]  # fmt: skip


@pytest.mark.parametrize("inputs, given, words", [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_values_and_shapes_that_do_not_fit_are_refused(tmp_path, inputs, given, words):
    elem = inputs[0].type.tensor_type.elem_type
    path = graph(tmp_path / "g.onnx", [node("Identity", ["v"], ["y"])], inputs, [vi("y", elem, None)])
    found = problems_of(path, given)
    assert list(found) == ["v"] and words in found["v"], found


def test_a_scalar_for_a_one_element_input_is_fed_as_one_element(tmp_path):
    path = graph(tmp_path / "g.onnx", [node("Identity", ["v"], ["y"])], [vi("v", I64, [1])], [vi("y", I64, [1])])
    feeds = planned(path, {"v": {"value": 7}})
    assert (feeds["v"]["value"], feeds["v"]["shape"]) == ([7], [1])
    assert run_feeds(path, list(feeds.values()))[0][0].tolist() == [7]


def test_a_recipe_input_the_model_lacks_is_refused_naming_the_models_inputs(tmp_path):
    path = graph(tmp_path / "g.onnx", [node("Identity", ["v"], ["y"])], [vi("v", F32, [2])], [vi("y", F32, [2])])
    found = problems_of(path, {"w": {"shape": [2]}})
    assert found["w"] == "expected an input of the model (it has v: float32 [2]), found 'w'"


def test_initializers_listed_as_inputs_are_not_fed(tmp_path):
    import onnxruntime as ort

    path = graph(
        tmp_path / "g.onnx",
        [node("Add", ["x", "bias"], ["y"])],
        [vi("x", F32, [2]), vi("bias", F32, [2])],
        [vi("y", F32, [2])],
        [const("bias", [1, 2], np.float32)],
    )
    assert [i.name for i in inspect(path)] == [i.name for i in ort.InferenceSession(str(path)).get_inputs()] == ["x"]


def test_a_file_that_is_not_onnx_is_a_problem(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff not a model")
    (problem,) = model_feeds(bad, {}, 0)[1]
    assert problem.name is None and problem.expected == "an ONNX model that the onnx package or ONNX Runtime reads"


# ------------------------------------------------------------------------------------------------
# The device's own check: it draws random data only where the host planned it, never for a value
# ------------------------------------------------------------------------------------------------


def _device_refuses(path, feeds, words):
    from melt.runtimes.onnxruntime import InputMismatch

    with pytest.raises(InputMismatch, match=words):
        run_feeds(path, feeds)


def test_the_device_refuses_random_data_for_an_input_that_needs_a_value(tmp_path):
    path = graph(
        tmp_path / "g.onnx", [node("Reshape", ["x", "c"], ["y"])], [vi("x", F32, [6]), vi("c", I64, [2])],
        [vi("y", F32, None)],
    )  # fmt: skip
    feeds = planned(path, {"c": {"value": [2, 3]}})
    assert feeds["c"]["needs_value"]
    tampered = dict(feeds["c"], fill="random", distribution="integers", low=0, high=100, seed=[0, 1])
    del tampered["value"]
    _device_refuses(path, [feeds["x"], tampered], "needs a value .*never draws random numbers")


def test_the_device_refuses_random_scalars_missing_feeds_and_wrong_types(tmp_path):
    path = graph(
        tmp_path / "g.onnx",
        [node("Add", ["x", "s"], ["y"])],
        [vi("x", F32, [2]), vi("s", F32, [])],
        [vi("y", F32, [2])],
    )
    feeds = planned(path, {"s": {"value": 0.5}})
    scalar = {"name": "s", "dtype": "float32", "shape": [], "fill": "random", "distribution": "normal", "mean": 0.0,
              "std": 1.0, "seed": [0, 1], "needs_value": False}  # fmt: skip
    _device_refuses(path, [feeds["x"], scalar], "needs a value")
    _device_refuses(path, [feeds["x"]], "s tensor\\(float\\) \\[\\] has no feed")
    _device_refuses(path, [feeds["x"], dict(feeds["s"], dtype="int64")], "the feed is int64")
    _device_refuses(path, [dict(feeds["x"], shape=[3]), feeds["s"]], "shape \\[3\\] does not fit")
    _device_refuses(path, [*feeds.values(), dict(feeds["s"], name="t")], "feeds \\['t'\\] are not model inputs")
    from melt.runtimes.onnxruntime import InputMismatch, build_inputs

    with pytest.raises(InputMismatch, match="no feeds"):
        build_inputs([], None)


def test_an_ort_format_model_is_planned_from_onnx_runtime_without_its_graph(tmp_path):
    """A model in ONNX Runtime's own .ort format (which the onnx package cannot read) still runs: floats
    get random data, and every other input needs the recipe's value or range, since no graph says what
    its values steer."""
    import subprocess
    import sys

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT), helper.make_node("Add", ["x", "f"], ["y"])]
    source = write_graph(tmp_path / "m.onnx", nodes, [x, ids], [y])
    convert = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(source)]
    subprocess.run([*convert, "--output_dir", str(tmp_path)], check=True, capture_output=True)
    ort_model = tmp_path / "m.ort"
    with pytest.raises(Exception):  # noqa: B017 - whatever the onnx package raises, it cannot read it
        inspect(ort_model)
    feeds, problems = model_feeds(ort_model, {}, seed=0)
    assert [p.name for p in problems] == ["ids"] and ".ort" in problems[0].found + problems[0].expected
    feeds, problems = model_feeds(ort_model, {"ids": {"range": [0, 10]}}, seed=0)
    assert problems == []
    by_name = {f["name"]: f for f in feeds}
    assert by_name["x"]["fill"] == "random" and by_name["x"]["distribution"] == "normal"
    assert by_name["ids"]["distribution"] == "integers" and (by_name["ids"]["low"], by_name["ids"]["high"]) == (0, 10)
