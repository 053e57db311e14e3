"""Bad recipes are refused before anything runs: exit 2, the file, the key (and line), what was
expected and what was found; nothing is written under the results folder."""

from __future__ import annotations

import pytest
from conftest import write_recipe

GOOD_LLAMA = """
  - id: tiny
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: [8, 16], n_gen: 4}
    params: {threads: [1, 2], n_ctx: 256}
"""
GOOD_ONNX = """
  - id: vad
    runtime: onnxruntime
    source: {path: tiny_vad.onnx}
    workload:
      inputs:
        input: {shape: [1, 512]}
        state: {shape: [2, 1, 16]}
        sr: {value: 16000}
"""


def recipe_text(models: str = GOOD_LLAMA + GOOD_ONNX, extra: str = "") -> str:
    return "name: t\nmodels:" + models + extra


def refuse(cli, workdir, text: str) -> str:
    """Run both `validate` and `run` on a bad recipe; both exit 2 and write nothing."""
    path = write_recipe(workdir, text)
    results = workdir / "results"
    code, out = cli("validate", path)
    assert code == 2, out
    code_run, out_run = cli("run", path, "--results", results)
    assert code_run == 2, out_run
    assert not results.exists() or not any(results.iterdir())
    assert str(path) in out
    return out


def test_good_recipe_validates(cli, workdir):
    path = write_recipe(workdir, recipe_text())
    code, out = cli("validate", path)
    assert code == 0, out
    assert "2 models, 5 cases" in out


@pytest.mark.parametrize(
    "bad, key, line, expected, found",
    [
        # unknown key at the top level and inside a model
        (
            recipe_text(extra="\nprotocl: {warmup: 1}\n"),
            "protocl",
            18,
            "one of the keys",
            "unknown key 'protocl'",
        ),
        (
            recipe_text(GOOD_LLAMA.replace("n_ctx: 256", "n_ctx: 256, thread: 2") + GOOD_ONNX),
            "models[0].params.thread",
            7,
            "threads",
            "unknown key 'thread'",
        ),
        # wrong types
        (
            recipe_text(extra="\nprotocol: {repetitions: five}\n"),
            "protocol.repetitions",
            18,
            "an integer",
            "'five'",
        ),
        (
            recipe_text(GOOD_LLAMA.replace("threads: [1, 2]", 'threads: ["1"]') + GOOD_ONNX),
            "models[0].params.threads[0]",
            7,
            "an integer",
            "'1'",
        ),
        # a list where a scalar belongs
        (
            recipe_text(GOOD_LLAMA.replace("n_gen: 4", "n_gen: [4, 8]") + GOOD_ONNX),
            "models[0].workload.n_gen",
            6,
            "a single value",
            "a list [4, 8]",
        ),
        # unknown runtime
        (
            recipe_text(GOOD_LLAMA.replace("llama_cpp", "llama-cpp") + GOOD_ONNX),
            "models[0].runtime",
            4,
            "llama_cpp",
            "'llama-cpp'",
        ),
        # a workload that does not fit the runtime
        (
            recipe_text(GOOD_LLAMA + GOOD_ONNX.replace("inputs:", "prompt_tokens: 8\n      inputs:")),
            "models[1].workload.prompt_tokens",
            13,
            "inputs, seed",
            "unknown key 'prompt_tokens'",
        ),
        (
            recipe_text(GOOD_LLAMA.replace("workload: {prompt_tokens: [8, 16], n_gen: 4}", "workload: {inputs: {}}")),
            "models[0].workload.inputs",
            6,
            "prompt_tokens",
            "unknown key 'inputs'",
        ),
        # missing model file
        (
            recipe_text(GOOD_LLAMA.replace("tiny.gguf", "missing.gguf")),
            "models[0].source.path",
            5,
            "a model file",
            "missing.gguf",
        ),
        # missing required key
        (
            recipe_text(GOOD_LLAMA.replace("    source: {path: tiny.gguf}\n", "")),
            "models[0].source",
            3,
            "required",
            "nothing",
        ),
        # prompt + n_gen beyond n_ctx
        (
            recipe_text(GOOD_LLAMA.replace("n_gen: 4", "n_gen: 250")),
            "models[0].workload.prompt_tokens",
            6,
            "<= n_ctx (256)",
            "16 + 250 = 266",
        ),
        # both prompt kinds at once
        (
            recipe_text(GOOD_LLAMA.replace("n_gen: 4", "n_gen: 4, prompts: p.jsonl")),
            "models[0].workload",
            6,
            "exactly one of prompt_tokens",
            "",
        ),
        # bad value in a literal
        (
            recipe_text(GOOD_LLAMA.replace("n_ctx: 256", "n_ctx: 256, cache_type_k: q9")),
            "models[0].params.cache_type_k[0]",
            7,
            "q8_0",
            "'q9'",
        ),
        # duplicate model ids
        (recipe_text(GOOD_LLAMA + GOOD_LLAMA), "models[1].id", 9, "a unique model id", "'tiny' again"),
        # duplicate keys in YAML
        (
            recipe_text(GOOD_LLAMA.replace("n_gen: 4", "n_gen: 4, n_gen: 5")),
            "models[0].workload.n_gen",
            6,
            "each key once",
            "duplicate",
        ),
    ],
)
def test_bad_recipe_is_refused(cli, workdir, bad, key, line, expected, found):
    out = refuse(cli, workdir, bad)
    assert f"recipe.yaml:{line}: {key}:" in out, out
    assert expected in out and found in out, out


def test_yaml_syntax_error_names_the_line(cli, workdir):
    out = refuse(cli, workdir, recipe_text() + "\n  bad: [unclosed\n")
    assert "recipe.yaml:" in out and "valid YAML" in out


def test_missing_recipe_file(cli, workdir):
    code, out = cli("validate", workdir / "nope.yaml")
    assert code == 2 and "no such file" in out


def test_missing_package_names_pip_package(cli, workdir):
    text = recipe_text(
        GOOD_LLAMA.replace("{path: tiny.gguf}", '{package_file: "melt_no_such_pkg:m.gguf", pip: melt-models-x}')
    )
    out = refuse(cli, workdir, text)
    assert "models[0].source.package_file" in out
    assert "pip install melt-models-x" in out


def test_prompts_file_is_checked(cli, workdir):
    (workdir / "p.jsonl").write_text('{"prompt": "hello"}\nnot json\n')
    text = recipe_text(GOOD_LLAMA.replace("prompt_tokens: [8, 16]", "prompts: p.jsonl"))
    out = refuse(cli, workdir, text)
    assert "p.jsonl:2" in out


def test_bad_device_profile_is_refused(cli, workdir):
    path = write_recipe(workdir, recipe_text())
    profile = workdir / "dev.yaml"
    profile.write_text("name: dev\ntransport: {kind: telnet}\n")
    code, out = cli("validate", path, "-d", profile)
    assert code == 2
    assert "dev.yaml:2: transport.kind:" in out and "telnet" in out
    code, out = cli("validate", path, "-d", "no-such-device")
    assert code == 2 and "Known profiles: jetson-orin-nano, local, pixel-8" in out


def test_every_problem_is_reported_at_once(cli, workdir):
    text = recipe_text(GOOD_LLAMA.replace("n_gen: 4", "n_gen: -1").replace("threads: [1, 2]", "threads: [0]"))
    out = refuse(cli, workdir, text)
    assert "models[0].workload.n_gen" in out and "models[0].params.threads[0]" in out
