"""ONNX Runtime: one trial is one inference on the inputs the host planned (case.json `feeds`):
the recipe's values, or fixed-seed random data for inputs that only carry data."""

from __future__ import annotations

import time

GRAPH_OPT = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
DTYPES = {  # ONNX Runtime's type strings -> numpy dtype names ("str": numpy str arrays)
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint64)": "uint64",
    "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}


def info() -> dict:
    import onnxruntime as ort

    return {
        "name": "onnxruntime",
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "device": ort.get_device(),
    }


class InputMismatch(ValueError):
    """The planned feeds do not fit the model's inputs (names, types, ranks, fixed dimensions), or a
    feed would draw random numbers for an input that needs a value."""


def _describe(meta) -> str:
    return f"{meta.name} {meta.type} {list(meta.shape)}"


def _fits(declared: list, shape: list) -> bool:
    return len(declared) == len(shape) and all(not isinstance(d, int) or d == s for d, s in zip(declared, shape))


def _random(feed: dict, dtype: str):
    import numpy as np

    rng = np.random.default_rng(feed["seed"])
    shape, dist = feed["shape"], feed.get("distribution")
    if dist == "normal" and dtype.startswith("float"):
        return (rng.standard_normal(shape) * feed["std"] + feed["mean"]).astype(dtype)
    if dist == "integers" and dtype not in ("bool", "str") and not dtype.startswith("float"):
        return rng.integers(feed["low"], feed["high"], shape, dtype=dtype)
    if dist == "bernoulli" and dtype == "bool":
        return rng.random(shape) < feed["p"]
    raise InputMismatch(f"input {feed['name']}: no random {dist!r} data for {dtype}")


def build_inputs(metas: list, feeds: list | None) -> dict:
    """Arrays for every model input, exactly as the host planned them (case.json `feeds`, written by
    melt/onnx_feeds.py): the recipe's value, or fixed-seed random data of the recorded distribution.

    metas: the session's input metadata (name, type, shape). Raises InputMismatch when a feed is
    missing, does not fit the model's type, rank or fixed dimensions, or would draw random numbers
    for an input that needs a value (a scalar, a string, or one the host marked needs_value):
    the host refuses those already; this is the device's own check.
    """
    import numpy as np

    if feeds is None:
        raise InputMismatch("case.json has no feeds: the host plans every input (melt/onnx_feeds.py)")
    by_name = {f["name"]: f for f in feeds}
    unknown = sorted(set(by_name) - {m.name for m in metas})
    if unknown:
        raise InputMismatch(f"feeds {unknown} are not model inputs; the model has: " + "; ".join(map(_describe, metas)))
    arrays = {}
    for meta in metas:
        feed = by_name.get(meta.name)
        if feed is None:
            raise InputMismatch(f"input {_describe(meta)} has no feed in case.json")
        dtype = DTYPES.get(meta.type)
        if dtype is None or dtype != feed["dtype"]:
            raise InputMismatch(f"input {_describe(meta)}: the feed is {feed['dtype']}; melt cannot feed {meta.type}")
        if feed["fill"] == "value":
            value = np.array(feed["value"], dtype=str if dtype == "str" else dtype)
        elif feed.get("needs_value") or dtype == "str" or (not meta.shape and feed.get("declared", []) == []):
            # a scalar (ONNX Runtime also reports [] for an input of unknown rank: the host's declared says which)
            raise InputMismatch(
                f"input {_describe(meta)} needs a value ({feed.get('why', 'a scalar or a string')}); "
                "melt never draws random numbers for it"
            )
        else:
            value = _random(feed, dtype)
        declared = list(meta.shape) if feed.get("declared", []) is not None else list(value.shape)
        if not _fits(declared, list(value.shape)):
            raise InputMismatch(f"input {meta.name}: shape {list(value.shape)} does not fit {_describe(meta)}")
        arrays[meta.name] = value
    return arrays


class Runner:
    def __init__(self, case: dict, case_dir: str):
        self.model_path = case["model_path"]
        self.params = case["params"]
        self.planned = case.get("feeds")

    def load(self) -> dict:
        import onnxruntime as ort

        p = self.params
        available = ort.get_available_providers()
        provider = p.get("execution_provider", "CPUExecutionProvider")
        if provider not in available:
            raise ValueError(f"execution provider {provider!r} is not available here; available: {available}")
        options = ort.SessionOptions()
        if "intra_op_threads" in p:
            options.intra_op_num_threads = p["intra_op_threads"]
        if "inter_op_threads" in p:
            options.inter_op_num_threads = p["inter_op_threads"]
        if "graph_optimization_level" in p:
            options.graph_optimization_level = getattr(
                ort.GraphOptimizationLevel, GRAPH_OPT[p["graph_optimization_level"]]
            )
        if "execution_mode" in p:
            options.execution_mode = getattr(ort.ExecutionMode, f"ORT_{p['execution_mode'].upper()}")
        t0 = time.monotonic_ns()
        self.session = ort.InferenceSession(self.model_path, sess_options=options, providers=[provider])
        t1 = time.monotonic_ns()
        metas = self.session.get_inputs()
        self.feeds = build_inputs(metas, self.planned)
        self.output_names = [o.name for o in self.session.get_outputs()]
        return {
            "load_s": (t1 - t0) / 1e9,
            "t_start_ns": t0,
            "t_end_ns": t1,
            "effective_params": {
                "intra_op_threads": options.intra_op_num_threads,
                "inter_op_threads": options.inter_op_num_threads,
                "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
                "execution_mode": str(options.execution_mode).split(".")[-1],
                "execution_provider": self.session.get_providers()[0],
            },
            "model": {
                "inputs": [_describe(m) for m in metas],
                "outputs": [_describe(o) for o in self.session.get_outputs()],
                "fed_shapes": {k: list(v.shape) for k, v in self.feeds.items()},
            },
        }

    def trial(self, index: int) -> dict:
        t0 = time.monotonic_ns()
        self.session.run(self.output_names, self.feeds)
        t1 = time.monotonic_ns()
        return {"duration_s": (t1 - t0) / 1e9, "t_start_ns": t0, "t_end_ns": t1}

    def close(self) -> dict:
        self.session = None
        return {}
