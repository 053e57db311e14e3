"""`melt validate` and `melt run` on ONNX recipes: an input that steers the model needs a value,
refused with exit 2 (file, line, key, what to give) before anything is written; what is fed is
recorded in case.json. On generated graphs and on the real Silero VAD of the quickstart."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_recipe
from onnx import TensorProto, helper, numpy_helper
from tiny_models import write_graph, write_tiny_vad_branching_onnx

from melt import sources
from melt.errors import InputError
from melt.recipe import Source, expand, load_recipe

QUICK = """
protocol: {warmup: 0, repetitions: 2, min_duration_s: 0}
telemetry: {interval_ms: 0}
"""


def vad_recipe(source: str, inputs: str) -> str:
    return (
        f"""
name: vad
models:
  - id: vad
    runtime: onnxruntime
    source: {source}
    workload:
      inputs:
{inputs}
"""
        + QUICK
    )


TINY_INPUTS = "        input: {shape: [1, 512]}\n        state: {shape: [2, 1, 16]}\n"
SILERO = '{package_file: "silero_vad:data/silero_vad.onnx", pip: silero-vad}'
SILERO_INPUTS = "        input: {shape: [1, 512]}\n        state: {shape: [2, 1, 128]}\n"


@pytest.fixture
def branching(tmp_path):
    write_tiny_vad_branching_onnx(tmp_path / "vad.onnx")
    return tmp_path


def refused(cli, folder, text: str) -> str:
    """Both validate and run exit 2 and write nothing; the output names the recipe file."""
    path = write_recipe(folder, text)
    code, out = cli("validate", path)
    assert code == 2, out
    results = folder / "results"
    code_run, out_run = cli("run", path, "--results", results)
    assert code_run == 2, out_run
    assert not results.exists() or not any(results.iterdir())
    assert str(path) in out and out_run.splitlines()[1:] == out.splitlines()[1:]
    return out


def run_ok(cli, folder, text: str) -> list[dict]:
    """`melt run` a recipe, expecting success; the case.json of every case."""
    path = write_recipe(folder, text)
    code, out = cli("run", path, "--results", folder / "results", "--run-id", "r")
    assert code == 0, out
    return [json.loads(p.read_text()) for p in sorted((folder / "results" / "r" / "cases").glob("*/case.json"))]


def test_a_recipe_without_sr_is_refused_naming_sr_and_what_to_give(cli, branching):
    out = refused(cli, branching, vad_recipe("{path: vad.onnx}", TINY_INPUTS))
    assert "recipe.yaml:7: models[0].workload.inputs:" not in out  # the key is the input's own
    assert (
        "recipe.yaml:7: models[0].workload.inputs.sr: expected workload.inputs.sr.value (e.g. 16000): "
        "sr is scalar int64 feeding If.cond via Equal; never random, found nothing"
    ) in out, out


def test_sr_given_as_random_data_is_refused(cli, branching):
    out = refused(cli, branching, vad_recipe("{path: vad.onnx}", TINY_INPUTS + "        sr: {shape: []}\n"))
    assert "recipe.yaml:10: models[0].workload.inputs.sr:" in out and "found shape [] (random data)" in out


def test_sr_given_runs_and_case_json_records_every_feed(cli, branching):
    (case,) = run_ok(cli, branching, vad_recipe("{path: vad.onnx}", TINY_INPUTS + "        sr: {value: 16000}\n"))
    feeds = {f["name"]: f for f in case["feeds"]}
    assert list(feeds) == ["input", "state", "sr"]  # the model's order
    assert feeds["sr"] == {
        "name": "sr", "dtype": "int64", "declared": [], "needs_value": True, "fill": "value", "shape": [],
        "value": 16000, "why": "sr is scalar int64 feeding If.cond via Equal",
    }  # fmt: skip
    assert feeds["input"] == {
        "name": "input", "dtype": "float32", "declared": ["batch", "samples"], "needs_value": False,
        "fill": "random", "shape": [1, 512], "seed": [0, 0], "distribution": "normal", "mean": 0.0, "std": 1.0,
        "why": "floats carry data",
    }  # fmt: skip
    assert feeds["state"]["seed"] == [0, 1] and feeds["state"]["shape"] == [2, 1, 16]
    agent = json.loads((branching / "results" / "r" / "cases" / case["case_id"] / "agent.json").read_text())
    assert agent["status"] == "ok"
    assert agent["load"]["model"]["fed_shapes"] == {"input": [1, 512], "state": [2, 1, 16], "sr": []}


def test_open_dimensions_without_a_shape_are_refused_before_the_run(cli, branching):
    out = refused(cli, branching, vad_recipe("{path: vad.onnx}", "        sr: {value: 16000}\n"))
    assert "models[0].workload.inputs.input: expected workload.inputs.input.shape" in out
    assert "models[0].workload.inputs.state: expected workload.inputs.state.shape" in out


def test_an_input_the_model_lacks_is_refused(cli, branching):
    inputs = TINY_INPUTS + "        sr: {value: 16000}\n        rate: {value: 8000}\n"
    out = refused(cli, branching, vad_recipe("{path: vad.onnx}", inputs))
    assert (
        "models[0].workload.inputs.rate: expected an input of the model (it has input: float32 [batch, samples]" in out
    )


@pytest.mark.parametrize(
    "spec, words",
    [
        ("{value: 16000, shape: []}", "either value (a fixed value) or shape and/or range (random data), not both"),
        ("{}", "value (a fixed value), or shape and/or range (random data)"),
        ("{range: [0, 10, 20]}", "a list with at most 2 items"),
        ("{value: {a: 1}}", ""),
    ],
)
def test_the_input_schema(cli, branching, spec, words):
    out = refused(cli, branching, vad_recipe("{path: vad.onnx}", TINY_INPUTS + f"        sr: {spec}\n"))
    assert "models[0].workload.inputs.sr" in out and words in out, out


def test_a_model_checked_only_once_resolved_is_refused_before_anything_is_written(cli, branching, monkeypatch):
    """A python source is assembled at run time, so validate cannot read its graph; run refuses it
    after resolving and before writing anything."""
    (branching / "vadmaker.py").write_text(f"def make():\n    return {str(branching / 'vad.onnx')!r}\n")
    monkeypatch.syspath_prepend(str(branching))
    path = write_recipe(branching, vad_recipe('{python: "vadmaker:make"}', TINY_INPUTS))
    assert sources.locate(Source(python="vadmaker:make"), branching) is None
    code, out = cli("validate", path)
    assert code == 0, out
    code, out = cli("run", path, "--results", branching / "results")
    assert code == 2, out
    assert "models[0].workload.inputs.sr: expected workload.inputs.sr.value (e.g. 16000)" in out
    assert not (branching / "results").exists() or not any((branching / "results").iterdir())


def test_real_silero_vad_without_sr_is_refused(cli, tmp_path):
    out = refused(cli, tmp_path, vad_recipe(SILERO, SILERO_INPUTS))
    assert "models[0].workload.inputs.sr: expected workload.inputs.sr.value (e.g. 16000)" in out
    assert "sr is scalar int64 feeding If.cond via Equal" in out


def test_real_silero_vad_with_sr_runs(cli, tmp_path):
    (case,) = run_ok(cli, tmp_path, vad_recipe(SILERO, SILERO_INPUTS + "        sr: {value: 16000}\n"))
    feeds = {f["name"]: f for f in case["feeds"]}
    assert feeds["sr"]["fill"] == "value" and feeds["sr"]["value"] == 16000 and feeds["sr"]["needs_value"]
    assert feeds["state"]["fill"] == "random" and feeds["state"]["declared"] == [2, None, 128]


def test_inputs_without_a_range_keep_their_case_ids(branching):
    """range is new: a recipe that does not use it must keep the case_ids (and so the history) it had."""
    plain = write_recipe(branching, vad_recipe("{path: vad.onnx}", TINY_INPUTS + "        sr: {value: 16000}\n"))
    (case,) = expand(load_recipe(plain), ["local"])
    assert case.workload["inputs"] == {
        "input": {"shape": [1, 512], "value": None},
        "state": {"shape": [2, 1, 16], "value": None},
        "sr": {"shape": None, "value": 16000},
    }  # as before range existed: the identity hashed into case_id


def test_a_range_is_part_of_the_case(tmp_path):
    """Token ids into an embedding: random within the vocabulary, or within the recipe's range, which is
    then part of the case (another range, another case)."""
    write_graph(
        tmp_path / "emb.onnx",
        [helper.make_node("Gather", ["emb", "ids"], ["y"])],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seq", 4])],
        [numpy_helper.from_array(np.zeros((30, 4), np.float32), "emb")],
    )
    text = vad_recipe("{path: emb.onnx}", "        ids: {shape: [1, 8]}\n")
    plain = expand(load_recipe(write_recipe(tmp_path, text)), ["local"])[0]
    ranged = expand(load_recipe(write_recipe(tmp_path, text.replace("[1, 8]}", "[1, 8], range: [0, 10]}"))), ["local"])
    assert ranged[0].workload["inputs"]["ids"]["range"] == [0, 10] and ranged[0].case_id != plain.case_id
    assert "range" not in plain.workload["inputs"]["ids"]
    with pytest.raises(InputError, match=r"models\[0\]\.workload\.inputs\.ids: expected a range inside \[0, 30\)"):
        load_recipe(write_recipe(tmp_path, text.replace("[1, 8]}", "[1, 8], range: [0, 40]}")))
