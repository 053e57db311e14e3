"""The feed plan of an ONNX model: the recipe's `workload.inputs` checked against what the graph says
of each input (melt/onnx_graph.py), turned into one JSON-able feed per input for case.json.

Host side. The agent (melt/runtimes/onnxruntime.py) builds exactly these arrays and refuses to
draw random data for a feed marked `needs_value`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from melt.onnx_graph import INDEX, NONZERO, InputInfo, ModelUnreadable, dims_text, inspect

MAX_VALUE_ITEMS = 1_000_000  # a value listed in YAML bigger than this is a mistake, not a workload
INT_LIMITS = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}


@dataclass(frozen=True)
class InputProblem:
    """What is wrong with workload.inputs.<name> (name None: with the model file itself)."""

    name: str | None
    expected: str
    found: str


def model_feeds(path: str | Path, inputs: dict[str, dict], seed: int) -> tuple[list[dict], list[InputProblem]]:
    """Inspect the ONNX file at path and plan its feeds (see plan_feeds). A file the onnx package cannot
    read (an ONNX Runtime `.ort` model) is planned from ONNX Runtime's input metadata instead, without
    the graph: then every non-float input needs a value (or, for integers, a range). A file neither
    reads is a problem."""
    try:
        infos = inspect(path)
    except ModelUnreadable as e:
        infos = _ort_infos(path)
        if infos is None:
            return [], [InputProblem(None, "an ONNX model that the onnx package or ONNX Runtime reads", f"{path}: {e}")]
    return plan_feeds(infos, inputs, seed)


def _ort_infos(path: str | Path) -> list[InputInfo] | None:
    """Inputs from ONNX Runtime's metadata, for a model the onnx package cannot read (None if ORT can't
    either). With no graph to follow, an input's uses are unknown: nothing but floats is drawn at random
    without the recipe's value or range."""
    from melt.onnx_graph import Use
    from melt.runtimes.onnxruntime import DTYPES

    try:
        import onnxruntime as ort

        metas = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
    except Exception:  # not a model at all: the caller reports the onnx package's reason
        return None
    unknown = Use("unknown", "an operator melt cannot see (the .ort format hides the graph from the onnx package)")
    return [
        InputInfo(
            m.name,
            m.type,
            DTYPES.get(m.type),
            [d if isinstance(d, int) else (d or None) for d in m.shape],
            [] if DTYPES.get(m.type, "").startswith("float") else [unknown],
        )  # fmt: skip
        for m in metas
    ]


def plan_feeds(infos: list[InputInfo], inputs: dict[str, dict], seed: int) -> tuple[list[dict], list[InputProblem]]:
    """One feed per model input, in the model's order, from `workload.inputs` (dicts with shape, value, range).

    Returns (feeds, problems); feeds are meant only when problems is empty. A feed holds: name,
    dtype (numpy name, or "str"), declared (the model's dims: int, name or None), shape (as fed),
    needs_value (the graph says only a value will do), why (the reason, in words), and fill:
    "value" with value (nested lists of the dtype), or "random" with seed ([workload seed,
    position of the input], for numpy.random.default_rng) and distribution: "normal" (mean, std),
    "integers" (low inclusive, high exclusive) or "bernoulli" (p).
    """
    feeds, problems = [], []
    names = {i.name for i in infos}
    for name in inputs:
        if name not in names:
            listing = "; ".join(f"{i.name}: {i.label()}" for i in infos) or "none"
            problems.append(InputProblem(name, f"an input of the model (it has {listing})", f"{name!r}"))
    for position, info in enumerate(infos):
        feed, problem = _plan_one(info, inputs.get(info.name) or {}, seed, position)
        if problem:
            problems.append(problem)
        else:
            feeds.append(feed)
    return feeds, problems


def _plan_one(info: InputInfo, spec: dict, seed: int, position: int) -> tuple[dict, InputProblem | None]:
    name, where = info.name, f"workload.inputs.{info.name}"

    def problem(expected: str, found: str) -> tuple[dict, InputProblem]:
        return {}, InputProblem(name, expected, found)

    if info.dtype is None:
        return problem("an input melt can feed (a tensor of numbers, bools or strings)", f"{info.onnx_type}")
    must = info.needs_value()
    feed = {"name": name, "dtype": info.dtype, "declared": info.shape, "needs_value": must is not None}
    if spec.get("value") is not None:
        planned, why = _value_feed(info, spec["value"])
        if why:
            return problem(f"a value for {name}, {info.label()}", why)
        reason = f"{name} is {info.label()}{must}" if must else "the recipe gives it"
        return {**feed, **planned, "why": reason}, None
    if must:
        given = "nothing" if not spec else f"{_spec_words(spec)} (random data)"
        return problem(f"{where}.value{_example(info)}: {name} is {info.label()}{must}; never random", given)
    shape = spec.get("shape")
    if shape is None:
        if info.shape is None or not all(isinstance(d, int) for d in info.shape):
            return problem(f"{where}.shape: {name} is {info.label()}; the recipe fixes its open dimensions", "nothing")
        shape = list(info.shape)
    elif not _fits(info.shape, shape):
        return problem(f"a shape that fits {info.label()}", f"shape {shape}")
    feed.update(fill="random", shape=shape, seed=[seed, position])
    if info.kind in ("float", "bool") and spec.get("range") is not None:
        return problem(f"no range: {name} is {info.label()}, random data of its own kind", f"range {spec['range']}")
    if info.kind == "float":
        feed.update(distribution="normal", mean=0.0, std=1.0, why="floats carry data")
    elif info.kind == "bool":
        feed.update(distribution="bernoulli", p=0.5, why="bools that only carry data")
    else:
        planned, why = _int_range(info, spec.get("range"))
        if why:
            return problem(*why)
        feed.update(planned)
    return feed, None


def _int_range(info: InputInfo, given: list | None) -> tuple[dict, tuple[str, str] | None]:
    """Random integers: the graph's safe [low, high), or the recipe's range checked against it."""
    where = f"workload.inputs.{info.name}"
    lo_dtype, hi_dtype = INT_LIMITS[info.dtype]
    unknown = info.needs_range()
    if given is None:
        if unknown:
            return {}, (
                f"{where}.range [low, high) or {where}.value: {info.name} is {info.label()}{unknown}",
                "nothing",
            )
        low, high, why = info.safe_range()
        return {"distribution": "integers", "low": low, "high": min(high, hi_dtype + 1), "why": why}, None
    low, high = given
    if not lo_dtype <= low < high <= hi_dtype + 1:
        return {}, (f"a range [low, high) with low < high, inside {info.dtype}", f"range {given}")
    if not unknown and any(u.role in (INDEX, NONZERO) for u in info.uses):
        safe_low, safe_high, why = info.safe_range()
        if not (safe_low <= low and high <= safe_high):
            return {}, (f"a range inside [{safe_low}, {safe_high}): {info.name} is {why}", f"range {given}")
    return {"distribution": "integers", "low": low, "high": high, "why": "the recipe's range"}, None


def _nested_shape(value) -> tuple[list[int] | None, list]:
    """Shape of a nested list (None when ragged) and its leaves in order."""
    if not isinstance(value, list):
        return [], [value]
    if not value:
        return [0], []
    parts = [_nested_shape(v) for v in value]
    first = parts[0][0]
    if any(p[0] is None or p[0] != first for p in parts):
        return None, []
    return [len(value), *first], [leaf for p in parts for leaf in p[1]]


def _leaf_problem(info: InputInfo, leaves: list) -> str | None:
    """Why the value's items do not fit the input's element type (None: they fit)."""
    dtype, label = info.dtype, info.label()
    for leaf in leaves:
        what = f"{leaf!r} ({type(leaf).__name__})"
        if dtype == "str":
            if not isinstance(leaf, str):
                return f"{what}: {label} takes strings (quote them in YAML)"
        elif dtype == "bool":
            if not isinstance(leaf, bool):
                return f"{what}: {label} takes true or false"
        elif dtype.startswith("float"):
            if isinstance(leaf, bool) or not isinstance(leaf, (int, float)):
                return f"{what}: {label} takes numbers"
        else:
            if isinstance(leaf, bool) or not (isinstance(leaf, int) or isinstance(leaf, float) and leaf.is_integer()):
                return f"{what}: {label} takes integers"
            lo, hi = INT_LIMITS[dtype]
            if not lo <= leaf <= hi:
                return f"{leaf}: outside {dtype} [{lo}, {hi}]"
    return None


def _fits(declared: list | None, shape: list[int]) -> bool:
    """Rank and every fixed dimension agree (named and unknown dimensions take any size)."""
    if declared is None:
        return True
    return len(declared) == len(shape) and all(not isinstance(d, int) or d == s for d, s in zip(declared, shape))


def _value_feed(info: InputInfo, value) -> tuple[dict, str | None]:
    shape, leaves = _nested_shape(value)
    if shape is None:
        return {}, f"a ragged list {str(value)[:120]}"
    if len(leaves) > MAX_VALUE_ITEMS:
        return {}, f"a value of {len(leaves)} items (at most {MAX_VALUE_ITEMS})"
    why = _leaf_problem(info, leaves)
    if why:
        return {}, why
    if info.kind == "int":
        value = _ints(value)
    if shape == [] and info.rank == 1 and not (isinstance(info.shape[0], int) and info.shape[0] != 1):
        value, shape = [value], [1]  # one number for a [1] input: fed as [value], as melt always allowed
    if not _fits(info.shape, shape):
        return {}, f"a value of shape {shape}, where the model declares {dims_text(info.shape)}"
    return {"fill": "value", "shape": shape, "value": value}, None


def _ints(value):
    return [_ints(v) for v in value] if isinstance(value, list) else int(value)


def _example(info: InputInfo) -> str:
    hints = info.hints()
    return " (e.g. " + " or ".join(repr(h) for h in hints[:3]) + ")" if hints else ""


def _spec_words(spec: dict) -> str:
    return ", ".join(f"{k} {spec[k]}" for k in ("shape", "range") if spec.get(k) is not None)
