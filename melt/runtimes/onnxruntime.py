"""ONNX Runtime: one trial is one inference on fixed-seed random inputs built from the model's
input metadata; the recipe gives shapes for dynamic dimensions and values for scalar inputs."""

from __future__ import annotations

import time

GRAPH_OPT = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
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
    """The recipe's inputs do not fit the model's (names, ranks, fixed dimensions)."""


def _describe(meta) -> str:
    return f"{meta.name} {meta.type} {list(meta.shape)}"


def build_inputs(metas: list, specs: dict, seed: int) -> dict:
    """Arrays for every model input: random (fixed seed) of the recipe's shape or the static shape,
    or the recipe's value. Raises InputMismatch naming the input and what the model wants."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = {m.name for m in metas}
    unknown = sorted(set(specs) - names)
    if unknown:
        raise InputMismatch(
            f"recipe inputs {unknown} are not model inputs; the model has: " + "; ".join(map(_describe, metas))
        )
    feeds = {}
    for meta in metas:
        dtype = DTYPES.get(meta.type)
        if dtype is None:
            raise InputMismatch(f"input {meta.name} has type {meta.type}, which melt cannot generate")
        spec = specs.get(meta.name, {})
        if spec.get("value") is not None:
            value = np.asarray(spec["value"], dtype=dtype)
            if len(meta.shape) != value.ndim and not (value.ndim == 0 and len(meta.shape) == 1):
                raise InputMismatch(
                    f"input {meta.name}: value has rank {value.ndim}, the model wants {_describe(meta)}"
                )
            feeds[meta.name] = value.reshape([1]) if value.ndim == 0 and len(meta.shape) == 1 else value
            continue
        shape = spec.get("shape")
        if shape is None:
            if not all(isinstance(d, int) for d in meta.shape):
                raise InputMismatch(
                    f"input {meta.name} has dynamic dimensions {list(meta.shape)}: "
                    f"give workload.inputs.{meta.name}.shape"
                )
            shape = list(meta.shape)
        if len(shape) != len(meta.shape):
            raise InputMismatch(
                f"input {meta.name}: shape {shape} has rank {len(shape)}, the model wants {_describe(meta)}"
            )
        for want, got in zip(meta.shape, shape, strict=False):
            if isinstance(want, int) and want > 0 and want != got:
                raise InputMismatch(f"input {meta.name}: shape {shape} does not fit the model's {list(meta.shape)}")
        if dtype.startswith("float"):
            feeds[meta.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool":
            feeds[meta.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[meta.name] = rng.integers(0, 100, shape).astype(dtype)
    return feeds


class Runner:
    def __init__(self, case: dict, case_dir: str):
        self.model_path = case["model_path"]
        self.workload = case["workload"]
        self.params = case["params"]

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
        self.feeds = build_inputs(metas, self.workload.get("inputs", {}), self.workload.get("seed", 0))
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
