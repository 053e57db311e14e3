"""llama.cpp's defaults are melt's: a param a recipe leaves out takes llama.cpp's own value, stays out of the
case's identity, and what llama.cpp resolved (flash attention auto above all) is recorded in metrics.json's
effective_params and shown in summary.csv. flash_attn takes auto, on, off (true / false are on / off)."""

from __future__ import annotations

import csv
import ctypes
import json
import re
import subprocess
import types

import pytest
from conftest import run_melt, write_recipe

from melt.recipe import expand, load_recipe
from melt.results.layout import _flash_attn_cell

PIN = """
name: pin
models:
  - id: tiny
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 4}
    params: {threads: 1}
  - id: tiny-fa
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 4}
    params: {threads: 1, flash_attn: [FA]}
"""
# the ids melt gave these cases before flash_attn took auto (melt 0f5e1a8): an unset flash_attn stays out of
# the identity, and on / off are held as the booleans they were
PINNED = {
    "tiny prompt_tokens=16 threads=1": "8e3641d5b2ac",
    "tiny-fa prompt_tokens=16 threads=1 flash_attn=False": "d987a3e52154",
    "tiny-fa prompt_tokens=16 threads=1 flash_attn=True": "4ec835776f7a",
}


def ids(workdir, fa: str) -> dict[str, str]:
    recipe = load_recipe(write_recipe(workdir, PIN.replace("FA", fa), f"r{abs(hash(fa))}.yaml"))
    return {c.label: c.case_id for c in expand(recipe, ["local"])}


@pytest.mark.parametrize("fa", ["false, true", "off, on", "'off', 'on'", '"off", "on"', "false, 'on'"])
def test_on_off_true_false_keep_the_case_ids_they_had(workdir, fa):
    assert ids(workdir, fa) == PINNED


def test_auto_is_a_case_of_its_own_and_unset_stays_out_of_the_identity(workdir):
    recipe = load_recipe(write_recipe(workdir, PIN.replace("FA", "auto, on, off")))
    cases = expand(recipe, ["local"])
    assert [c.params.get("flash_attn", "unset") for c in cases] == ["unset", "auto", True, False]
    assert "flash_attn" not in cases[0].params and cases[0].case_id == PINNED["tiny prompt_tokens=16 threads=1"]
    assert cases[1].label.endswith("flash_attn=auto") and len({c.case_id for c in cases}) == 4


@pytest.mark.parametrize("runtime", ["llama_cpp", "llama_cpp_cli"])
@pytest.mark.parametrize(
    "value, found",
    [("1", "1 (int)"), ("Auto", "'Auto' (a string)"), ("'yes'", "'yes' (a string)"), ("enabled", "'enabled'")],
)
def test_other_flash_attn_values_are_refused_with_the_key(cli, workdir, runtime, value, found):
    path = write_recipe(workdir, PIN.replace("llama_cpp", runtime).replace("FA", value))
    code, out = cli("validate", path)
    assert code == 2, out
    assert f"{path}:12: models[1].params.flash_attn[0]: expected auto, on or off" in out and found in out, out


def test_an_unset_n_ctx_fits_the_workload(cli, workdir):
    """melt's own n_ctx default (2048) is gone: prompt + n_gen beyond it is fine when n_ctx is left out
    (llama-bench's rule makes it fit); an n_ctx the recipe sets is still checked."""
    body = PIN.replace("prompt_tokens: 16, n_gen: 4", "prompt_tokens: 3000, n_gen: 64").replace("FA", "auto")
    code, out = cli("validate", write_recipe(workdir, body))
    assert code == 0, out
    code, out = cli("validate", write_recipe(workdir, body.replace("threads: 1}", "threads: 1, n_ctx: 2048}")))
    assert code == 2 and "3000 + 64 = 3064" in out, out


@pytest.mark.parametrize(
    "effective, cell",
    [
        ({"flash_attn": "on", "asked": {"flash_attn": "auto"}}, "on (auto)"),
        ({"flash_attn": "off", "asked": {"flash_attn": "auto"}}, "off (auto)"),
        ({"flash_attn": None, "asked": {"flash_attn": "auto"}}, "? (auto)"),
        ({"flash_attn": "on", "asked": {"flash_attn": "on"}}, "on"),
        ({"flash_attn": "off", "asked": {"flash_attn": "on"}}, "off (asked on)"),
        ({"flash_attn": "off"}, "off (auto)"),
        ({"intra_op_threads": 2}, None),
        (None, None),
    ],
)
def test_summary_cell(effective, cell):
    assert _flash_attn_cell(effective) == cell


# --- a real `melt run` on this machine ----------------------------------------------------------------------

RUN = """
name: defaults
models:
  - id: only-threads
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 4}
    params: {threads: 1}
  - id: fa
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 4}
    params: {threads: 1, flash_attn: [off, on, auto]}
  - id: nothing
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 4}
  - id: swa
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 4}
    params: {threads: 1, swa_full: [true, false]}
protocol: {warmup: 0, repetitions: 2, min_duration_s: 0}
telemetry: {interval_ms: 0, idle_s: 0}
"""


def said(lines: list[str]) -> str | None:
    """What llama.cpp's own lines say it ran, read here apart from melt.runtimes.llama_log: the resolution
    line of an auto, else the constructor's explicit enabled / disabled."""
    for line in reversed(lines):
        if "Flash Attention" in line:
            return "on" if line.rstrip().endswith("enabled") else "off"
    for line in lines:
        m = re.search(r"flash_attn\s*=\s*(enabled|disabled)", line)
        if m:
            return "on" if m[1] == "enabled" else "off"
    return None


@pytest.fixture(scope="module")
def run(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("defaults")
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    proc = run_melt("run", write_recipe(folder, RUN), "--results", folder / "results", "--run-id", "d", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = folder / "results" / "d"
    cases = {}
    with (run_dir / "summary.csv").open(newline="") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f)}
    for case_dir in (run_dir / "cases").iterdir():
        case = json.loads((case_dir / "case.json").read_text())
        metrics = json.loads((case_dir / "metrics.json").read_text())
        cases[case["label"]] = {"case": case, "effective": metrics["effective_params"], "row": rows[case_dir.name]}
    cases["run_dir"] = run_dir
    return cases


def test_a_recipe_that_sets_only_threads_records_flash_attention_as_llama_cpp_resolved(run):
    import llama_cpp

    c = run["only-threads prompt_tokens=16 threads=1"]
    eff = c["effective"]
    # melt asked what llama.cpp asks by default (auto, in this build), and recorded that it was a default
    defaults = llama_cpp.llama_context_default_params()
    assert eff["asked"]["flash_attn"] == {-1: "auto", 0: "off", 1: "on"}[defaults.flash_attn_type] == "auto"
    assert "flash_attn" in eff["defaults"] and "threads" not in eff["defaults"]
    # and recorded what llama.cpp said it resolved auto to
    lines = eff["llama_cpp_said"]["flash_attn"]
    assert any(re.search(r"flash_attn\s*=\s*auto", line) for line in lines)
    assert eff["flash_attn"] == said(lines) and eff["flash_attn"] in ("on", "off")
    assert c["row"]["flash_attn"] == f"{eff['flash_attn']} (auto)"
    assert "unknown" not in eff


def test_other_params_left_out_take_the_c_library_defaults(run):
    import llama_cpp

    eff = run["only-threads prompt_tokens=16 threads=1"]["effective"]
    defaults = llama_cpp.llama_context_default_params()
    model_defaults = llama_cpp.llama_model_default_params()
    assert eff["threads"] == eff["threads_batch"] == 1  # threads_batch follows threads, as llama.cpp's tools do
    assert eff["asked"]["n_batch"] == defaults.n_batch and eff["asked"]["n_ubatch"] == defaults.n_ubatch
    assert eff["asked"]["n_ctx"] == 16 + 4  # llama-bench's: the prompt and n_gen
    assert eff["n_ctx"] >= 20 and eff["n_batch"] == min(20, defaults.n_batch)  # llama.cpp caps n_batch at n_ctx
    assert eff["asked"]["n_gpu_layers"] == model_defaults.n_gpu_layers
    if not llama_cpp.llama_supports_gpu_offload():  # a CPU build offloads nothing, whatever was asked
        assert eff["n_gpu_layers"] == 0
    else:  # a GPU build says how many it offloaded (on a GPU machine, all of the tiny model's 3)
        assert isinstance(eff["n_gpu_layers"], int)
    assert eff["asked"]["cache_type_k"] == eff["cache_type_k"] == "f16" == eff["cache_type_v"]
    assert isinstance(eff["use_mmap"], bool)


def test_swa_full_left_out_is_llama_cpp_tools_default_not_the_c_one(run, llama_bench_bin):
    """The C default keeps a full-size sliding-window cache; llama-cli / llama-completion (and llama-bench)
    do not, and melt runs as they do. The real tool's --help says its default."""
    import llama_cpp

    text = subprocess.run([str(llama_bench_bin.parent / "llama-completion"), "--help"], capture_output=True,
                          text=True).stdout  # fmt: skip
    (tools_default,) = re.findall(r"--swa-full\s+use full-size SWA cache \(default: (true|false)\)", text)
    assert llama_cpp.llama_context_default_params().swa_full is True  # what melt deliberately does not take
    eff = run["only-threads prompt_tokens=16 threads=1"]["effective"]
    assert eff["swa_full"] is eff["asked"]["swa_full"] is (tools_default == "true") is False
    assert "swa_full" in eff["defaults"]
    for value in (True, False):
        eff = run[f"swa prompt_tokens=16 threads=1 swa_full={value}"]["effective"]
        assert eff["swa_full"] is value and "swa_full" not in eff["defaults"]


@pytest.mark.parametrize("fa, asked", [("False", "off"), ("True", "on"), ("auto", "auto")])
def test_an_explicit_choice_is_recorded_with_what_ran(run, fa, asked):
    c = run[f"fa prompt_tokens=16 threads=1 flash_attn={fa}"]
    eff = c["effective"]
    assert eff["asked"]["flash_attn"] == asked and "flash_attn" not in eff["defaults"]
    assert eff["flash_attn"] == said(eff["llama_cpp_said"]["flash_attn"])
    if asked == "auto":
        assert c["row"]["flash_attn"] == f"{eff['flash_attn']} (auto)"
        assert eff["flash_attn"] == run["only-threads prompt_tokens=16 threads=1"]["effective"]["flash_attn"]
    else:
        assert eff["flash_attn"] == asked and c["row"]["flash_attn"] == asked


def test_threads_left_out_are_llama_bench_s_default(run, llama_bench_bin):
    """llama.cpp's tools' default -t, as the real llama-bench prints it in its --help."""
    eff = run["nothing prompt_tokens=16"]["effective"]
    text = subprocess.run([str(llama_bench_bin), "--help"], capture_output=True, text=True).stdout
    (default,) = re.findall(r"-t, --threads <n>\s+\(default: (\d+)\)", text)
    assert eff["threads"] == eff["threads_batch"] == int(default)
    assert {"threads", "threads_batch", "flash_attn", "n_ctx"} <= set(eff["defaults"])


def test_markdown_export_shows_flash_attention_as_it_ran(run):
    proc = run_melt("results", "export", run["run_dir"], "--format", "md")
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| device"))
    column = header.split(" | ").index("flash attn")
    cells = {line.split(" | ")[1]: line.split(" | ")[column] for line in proc.stdout.splitlines()[1:]
             if line.startswith("| ") and line != header and "---" not in line}  # fmt: skip
    for label, c in run.items():
        if label != "run_dir":
            assert cells[label] == c["row"]["flash_attn"]


# --- a llama-cpp-python from before llama.cpp's flash-attention-auto change ---------------------------------
# Its structs (include/llama.h until August 2025) have flash_attn and use_mmap booleans where the current one has
# flash_attn_type and load_mode; one cannot be installed beside the current one, so its default-params
# functions stand in here with those layouts and llama.cpp's defaults of then (flash attention off, mmap on).


class OldContextParams(ctypes.Structure):
    _fields_ = [("n_ctx", ctypes.c_uint32), ("n_batch", ctypes.c_uint32), ("n_ubatch", ctypes.c_uint32),
                ("n_threads", ctypes.c_int32), ("n_threads_batch", ctypes.c_int32), ("type_k", ctypes.c_int),
                ("type_v", ctypes.c_int), ("flash_attn", ctypes.c_bool), ("no_perf", ctypes.c_bool)]  # fmt: skip


class OldModelParams(ctypes.Structure):
    _fields_ = [("n_gpu_layers", ctypes.c_int32), ("use_mmap", ctypes.c_bool)]


OLD_LIB = types.SimpleNamespace(
    llama_context_default_params=lambda: OldContextParams(512, 2048, 512, 4, 4, 1, 1, False, True),
    llama_model_default_params=lambda: OldModelParams(0, True),
)


@pytest.mark.parametrize(
    "params, flash_attn, asked",
    [({}, False, "off"), ({"flash_attn": "auto"}, False, "off"), ({"flash_attn": True}, True, "on"),
     ({"flash_attn": False}, False, "off")],
)  # fmt: skip
def test_an_older_llama_cpp_python_gets_its_own_defaults(params, flash_attn, asked):
    from melt.runtimes import llama_cpp as runtime

    runner = runtime.Runner({"model_path": "m.gguf", "workload": {"n_gen": 4}, "params": params}, ".")
    cp, asked_ctx = runner._context_params(OLD_LIB, 20)
    assert cp.flash_attn is flash_attn and asked_ctx["flash_attn"] == asked  # auto: that build's default, off
    assert cp.no_perf is False and (cp.n_ctx, cp.n_batch, cp.n_ubatch) == (20, 2048, 512)
    assert asked_ctx["swa_full"] is None  # no sliding-window choice in that build
    mp, asked_model = runner._model_params(OLD_LIB)
    assert (mp.n_gpu_layers, mp.use_mmap) == (0, True) and asked_model == {"n_gpu_layers": 0, "use_mmap": True}
    runner.params = {**params, "use_mmap": False, "n_gpu_layers": -1}
    mp, asked_model = runner._model_params(OLD_LIB)
    assert (mp.n_gpu_layers, mp.use_mmap) == (0x7FFFFFFF, False) and asked_model["n_gpu_layers"] == -1
