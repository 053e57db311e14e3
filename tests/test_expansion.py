"""Matrix expansion and case_id stability."""

from __future__ import annotations

from conftest import write_recipe

from melt.recipe import case_id_of, expand, load_recipe

RECIPE = """
name: sweep
models:
  - id: tiny
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: [8, 16, 32], n_gen: 4}
    params: {threads: [1, 2], n_ctx: 256, flash_attn: [false, true]}
  - id: vad
    runtime: onnxruntime
    source: {path: tiny_vad.onnx}
    workload: {inputs: {input: {shape: [1, 64]}, state: {shape: [2, 1, 16]}, sr: {value: 8000}}}
    params: {intra_op_threads: [1, 2]}
"""

# the same recipe with keys in another order and other spacing: same cases, same ids
REORDERED = """
models:
  - runtime: llama_cpp
    id: tiny
    params: {flash_attn: [false, true], n_ctx: [256], threads: [1, 2]}
    workload: {n_gen: 4, prompt_tokens: [8, 16, 32]}
    source:
      path: tiny.gguf
  - params: {intra_op_threads: [1, 2]}
    workload: {inputs: {sr: {value: 8000}, state: {shape: [2, 1, 16]}, input: {shape: [1, 64]}}}
    id: vad
    source: {path: tiny_vad.onnx}
    runtime: onnxruntime
name: sweep
"""


def test_cartesian_product_per_model_and_device(workdir):
    recipe = load_recipe(write_recipe(workdir, RECIPE))
    cases = expand(recipe, ["local", "other"])
    assert len(cases) == 2 * (3 * 2 * 2 + 2)
    tiny = [c for c in cases if c.model_id == "tiny" and c.device == "local"]
    assert {(c.workload["prompt_tokens"], c.params["threads"], c.params["flash_attn"]) for c in tiny} == {
        (p, t, f) for p in (8, 16, 32) for t in (1, 2) for f in (False, True)
    }
    assert all(c.params["n_ctx"] == 256 and c.workload["n_gen"] == 4 for c in tiny)
    assert len({c.case_id for c in cases}) == len(cases)
    assert tiny[0].label == "tiny prompt_tokens=8 threads=1 n_ctx=256 flash_attn=False"


def test_case_ids_are_stable_across_key_order_and_runs(workdir):
    a = expand(load_recipe(write_recipe(workdir, RECIPE, "a.yaml")), ["local"])
    b = expand(load_recipe(write_recipe(workdir, REORDERED, "b.yaml")), ["local"])
    assert sorted(c.case_id for c in a) == sorted(c.case_id for c in b)
    # and across melt versions: the id is the sha256 of the canonical JSON of the identity, pinned here
    assert case_id_of({"b": [1, 2], "a": 1}) == "8baa73198470"


def test_case_id_changes_with_what_is_measured(workdir):
    base = {c.label: c.case_id for c in expand(load_recipe(write_recipe(workdir, RECIPE, "a.yaml")), ["local"])}
    changed = RECIPE.replace("n_gen: 4", "n_gen: 8")
    other = {c.label: c.case_id for c in expand(load_recipe(write_recipe(workdir, changed, "c.yaml")), ["local"])}
    tiny_labels = [label for label in base if label.startswith("tiny")]
    assert all(base[label] != other[label] for label in tiny_labels)
    vad_labels = [label for label in base if label.startswith("vad")]
    assert all(base[label] == other[label] for label in vad_labels)
