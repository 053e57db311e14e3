"""A runtime the device cannot run is refused at plan time: `melt validate`, `melt run` and `melt sweep` exit 2
naming the device, the runtime and the profile key to set, one problem per (device, runtime), before anything
is written. What a device can run follows from its profile (melt/devices/capability.py):

- runtimes llama_cpp and onnxruntime run in melt's agent: they need a Python on the device;
- runtime llama_cpp_cli drives llama.cpp's tools: it needs llama_cpp_bin;
- python absent means the transport's default: local and ssh have one, adb has none; python: false means none.

`melt devices probe` reports the profile's declaration and the runtimes it allows (over adb: tests/test_adb.py)."""

from __future__ import annotations

import itertools
import json
import re
import sys
import typing
from pathlib import Path

import pytest
from conftest import ROOT, run_melt, write_recipe

from melt.recipe import ModelSpec
from melt.sweep import is_sweep_file

TERMUX_PYTHON = "/data/data/com.termux/files/usr/bin/python3"

# --- the rule, stated here apart from melt/devices/capability.py --------------------------------------------

HAS_PYTHON_BY_DEFAULT = {"local": True, "ssh": True, "adb": False}
AGENT_RUNTIMES = {"llama_cpp", "onnxruntime"}  # run inside melt's agent
TOOL_RUNTIMES = {"llama_cpp_cli"}  # run llama.cpp's tools from a shell
TRANSPORTS = {"local": "{kind: local}", "ssh": "{kind: ssh, host: board.invalid}", "adb": "{kind: adb, serial: X1}"}
PYTHONS = {"absent": None, "false": "false", "path": TERMUX_PYTHON}
BINS = {"absent": None, "set": "/opt/llama.cpp/bin"}


def needed_key(transport: str, python: str, llama_bin: str, runtime: str) -> str | None:
    """The profile key a runtime needs and this profile does not give; None when the device can run it."""
    if runtime in TOOL_RUNTIMES:
        return None if BINS[llama_bin] else "llama_cpp_bin"
    has_python = PYTHONS[python] not in (None, "false") or (python == "absent" and HAS_PYTHON_BY_DEFAULT[transport])
    return None if has_python else "python"


def write_profile(folder: Path, name: str, transport: str, python: str = "absent", llama_bin: str = "absent") -> Path:
    text = f"name: {name}\ntransport: {TRANSPORTS[transport]}\n"
    if PYTHONS[python]:
        text += f"python: {PYTHONS[python]}\n"
    if BINS[llama_bin]:
        text += f"llama_cpp_bin: {BINS[llama_bin]}\n"
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


# one model per runtime; llama_cpp and llama_cpp_cli give two cases each, so a refusal covers several cases
MODELS = {
    "llama_cpp": """
  - id: llm
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 8, n_gen: 4}
    params: {threads: [1, 2]}
""",
    "onnxruntime": """
  - id: static
    runtime: onnxruntime
    source: {path: tiny_static.onnx}
""",
    "llama_cpp_cli": """
  - id: cli
    runtime: llama_cpp_cli
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 8, n_gen: 4}
    params: {threads: [1, 2]}
""",
}


def recipe_of(folder: Path, *runtimes: str, name: str = "caps") -> Path:
    return write_recipe(folder, f"name: {name}\nmodels:" + "".join(MODELS[r] for r in runtimes), f"{name}.yaml")


def problem_lines(out: str, profile: Path) -> list[str]:
    """The lines of a refusal that point at this profile file."""
    return [line for line in out.splitlines() if line.startswith(str(profile.resolve()) + ":")]


def test_the_table_covers_every_runtime_a_recipe_can_name():
    from melt.devices.capability import NEEDS

    recipe_runtimes = set()
    for model in typing.get_args(typing.get_args(ModelSpec)[0]):
        recipe_runtimes |= set(typing.get_args(model.model_fields["runtime"].annotation))
    assert recipe_runtimes == AGENT_RUNTIMES | TOOL_RUNTIMES == set(NEEDS)


# --- the grid: every transport x python x llama_cpp_bin, with a recipe of every runtime ----------------------

GRID = list(itertools.product(TRANSPORTS, PYTHONS, BINS))


@pytest.mark.parametrize("transport, python, llama_bin", GRID, ids=["-".join(g) for g in GRID])
def test_grid(cli, workdir, transport, python, llama_bin):
    profile = write_profile(workdir, f"dev-{transport}", transport, python, llama_bin)
    recipe = recipe_of(workdir, *MODELS)
    code, out = cli("validate", recipe, "-d", profile)
    refused = {r: needed_key(transport, python, llama_bin, r) for r in MODELS}
    refused = {r: key for r, key in refused.items() if key}
    assert code == (2 if refused else 0), out
    lines = problem_lines(out, profile)
    assert len(lines) == len(refused), out  # one per (device, runtime), however many cases
    for runtime, key in refused.items():
        (line,) = [li for li in lines if f"runtime {runtime}:" in li]
        assert f": {key}: expected " in line and f"device dev-{transport}" in line, line
    if not refused:
        assert f"{len(MODELS) + 2} cases on dev-{transport}" in out


# --- the cases, through the installed `melt` -------------------------------------------------------


def test_llama_cpp_cli_on_local_is_refused_by_validate(workdir):
    proc = run_melt("validate", recipe_of(workdir, "llama_cpp_cli"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    local = ROOT / "device_profiles" / "local.yaml"
    (line,) = problem_lines(proc.stderr, local)
    assert line.startswith(f"{local}: llama_cpp_bin: expected the folder of llama.cpp's tools"), line
    assert "device local, runtime llama_cpp_cli: 2 cases" in line and line.endswith("found no llama_cpp_bin")
    assert "Set that key in the device's profile" in proc.stderr
    assert proc.stdout == ""


def test_llama_cpp_cli_on_local_is_refused_by_run_before_anything_is_written(workdir):
    results = workdir / "results"
    proc = run_melt("run", recipe_of(workdir, "llama_cpp_cli"), "--results", results, "--run-id", "r")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "runtime llama_cpp_cli" in proc.stderr and "llama_cpp_bin" in proc.stderr
    assert not results.exists()


def test_onnxruntime_on_a_phone_needs_python_and_termux_gives_it(workdir):
    recipe = recipe_of(workdir, "onnxruntime")
    bare = write_profile(workdir, "phone", "adb")
    proc = run_melt("validate", recipe, "-d", bare)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = problem_lines(proc.stderr, bare)
    assert line.startswith(f"{bare}: python: expected a Python 3.10+ on the device"), line
    assert "device phone, runtime onnxruntime: 1 case)" in line
    assert line.endswith("found no python (adb devices have none unless set)")
    termux = write_profile(workdir, "phone", "adb", python="path")
    proc = run_melt("validate", recipe, "-d", termux)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 cases on phone" in proc.stdout


def test_a_board_without_python(workdir):
    """python: false on an SSH board: no agent runtimes (refused at python's line), llama.cpp's tools where
    llama_cpp_bin is set."""
    board = write_profile(workdir, "yocto", "ssh", python="false")
    proc = run_melt("validate", recipe_of(workdir, "onnxruntime"), "-d", board)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = problem_lines(proc.stderr, board)
    assert line.startswith(f"{board}:3: python: expected") and line.endswith("found python: false"), line
    tools = write_profile(workdir, "yocto", "ssh", python="false", llama_bin="set")
    proc = run_melt("validate", recipe_of(workdir, "llama_cpp_cli"), "-d", tools)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 cases on yocto" in proc.stdout


def test_one_problem_per_device_and_runtime_however_many_cases(workdir):
    many = MODELS["llama_cpp"].replace("threads: [1, 2]", "threads: [1, 2, 3, 4], n_batch: [8, 16, 32]")
    many += MODELS["llama_cpp"].replace("id: llm", "id: llm2")
    recipe = write_recipe(workdir, "name: many\nmodels:" + many + MODELS["onnxruntime"], "many.yaml")
    a = write_profile(workdir, "a", "adb")
    b = write_profile(workdir, "b", "ssh", python="false")
    ok = write_profile(workdir, "c", "local")
    proc = run_melt("validate", recipe, "-d", a, "-d", ok, "-d", b)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for profile, device in ((a, "a"), (b, "b")):
        lines = problem_lines(proc.stderr, profile)
        assert len(lines) == 2, proc.stderr  # llama_cpp (14 cases over two models) and onnxruntime (1 case)
        assert any(f"device {device}, runtime llama_cpp: 14 cases" in li for li in lines), lines
        assert any(f"device {device}, runtime onnxruntime: 1 case)" in li for li in lines), lines
    assert problem_lines(proc.stderr, ok) == []
    assert len(re.findall(r"expected a Python", proc.stderr)) == 4


def write_sweep(folder: Path, devices: list[Path]) -> Path:
    path = folder / "sweep.yaml"
    pool = "".join(f"  - {d}\n" for d in devices)
    path.write_text(f"name: caps-sweep\ndevices:\n{pool}recipes:\n  - caps.yaml\n")
    return path


def test_a_sweep_with_one_incapable_device_is_refused(workdir):
    recipe_of(workdir, "onnxruntime", "llama_cpp")
    good = write_profile(workdir, "good", "local")
    phone_profile = write_profile(workdir, "phone", "adb", llama_bin="set")
    sweep = write_sweep(workdir, [good, phone_profile])
    proc = run_melt("validate", sweep)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = problem_lines(proc.stderr, phone_profile)
    assert {re.search(r"runtime (\w+):", li).group(1) for li in lines} == {"onnxruntime", "llama_cpp"}, lines
    assert len(lines) == 2 and problem_lines(proc.stderr, good) == []
    results = workdir / "results"
    proc = run_melt("sweep", sweep, "--results", results, "--no-live")
    assert proc.returncode == 2 and "device phone, runtime onnxruntime" in proc.stderr, proc.stderr
    assert not results.exists()
    assert run_melt("validate", write_sweep(workdir, [good])).returncode == 0


@pytest.mark.parametrize("value", ["true", "3", '""', "[python3]"])
def test_python_is_a_path_or_false(workdir, value):
    profile = workdir / "odd.yaml"
    profile.write_text(f"name: odd\ntransport: {{kind: local}}\npython: {value}\n")
    proc = run_melt("validate", recipe_of(workdir, "onnxruntime"), "-d", profile)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = problem_lines(proc.stderr, profile)
    assert line.startswith(f"{profile}:3: python: expected a path or command of a Python 3.10+ on the device, or "
                           "false"), line  # fmt: skip


def test_shipped_profiles_run_the_shipped_recipes():
    """The shipped recipes (all agent runtimes) validate on every shipped profile with a Python; the phone
    profile (llama_cpp_bin, no Python) takes a llama_cpp_cli recipe and refuses the agent's."""
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        devices = [] if is_sweep_file(recipe) else ["-d", "local", "-d", "jetson-orin-nano", "-d", "raspberry-pi-5"]
        proc = run_melt("validate", recipe, *devices)
        assert proc.returncode == 0, proc.stderr
    proc = run_melt("validate", ROOT / "recipes" / "nightly.yaml", "-d", "pixel-8")
    pixel = ROOT / "device_profiles" / "pixel-8.yaml"
    assert proc.returncode == 2 and len(problem_lines(proc.stderr, pixel)) == 2, proc.stderr


def test_phone_profile_takes_a_llama_cpp_cli_recipe(workdir):
    proc = run_melt("validate", recipe_of(workdir, "llama_cpp_cli"), "-d", "pixel-8")
    assert proc.returncode == 0, proc.stderr


# --- melt devices probe ------------------------------------------------------------------------------------


def test_probe_reports_the_profiles_capabilities_on_local(workdir):
    proc = run_melt("devices", "probe", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    caps = json.loads(proc.stdout)["capabilities"]
    assert Path(caps["python"]).resolve() == Path(sys.executable).resolve()  # the Python running melt
    assert caps["python_from"] == "the default for local" and caps["llama_cpp_bin"] is None
    assert caps["runtimes"] == ["llama_cpp", "onnxruntime"]
    assert list(caps["refused"]) == ["llama_cpp_cli"]
    assert caps["refused"]["llama_cpp_cli"]["key"] == "llama_cpp_bin"
    assert caps["refused"]["llama_cpp_cli"]["found"] == "no llama_cpp_bin"
    tools = workdir / "tools"
    tools.mkdir()
    profile = write_profile(workdir, "here", "local")
    profile.write_text(profile.read_text() + f"llama_cpp_bin: {tools}\n")
    proc = run_melt("devices", "probe", profile)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"llama_cpp_bin {tools}" in text and "runtimes: llama_cpp, onnxruntime, llama_cpp_cli" in text, text
    assert "not llama_cpp_cli" not in text
