"""The agent's environment is built from an allow-list plus the profile's `env:`, never inherited whole:
a variable set in the shell melt starts from (OMP_NUM_THREADS, GGML_*...) does not reach the agent unless
the profile passes it, a passed one is recorded with its value, and the withheld names are recorded.
Real `melt run` / `melt devices probe` over the local transport, the lab's real sshd and the stand-in phone;
the sh wrapper under every POSIX shell here, checked against the Python rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_melt, write_recipe
from test_adb import adbd  # noqa: F401 - the stand-in phone's adbd as a fixture
from test_isa import SM8150_FEATURES, arm64_cpuinfo

from melt.agent.environment import (
    ALLOWED,
    SPEED_RELEVANT,
    agent_environ,
    is_allowed,
    is_speed_relevant,
    parse_env_listing,
    record,
    sh_wrapper,
)

# what a test sets in the shell melt starts from, and what its profile passes
SHELL_VARS = {"OMP_NUM_THREADS": "3", "GGML_SOMETHING": "1", "MKL_DYNAMIC": "FALSE", "LD_PRELOAD": ""}
PASSES = ["GGML_SOMETHING", "OPENBLAS_NUM_THREADS=2"]
EXPECTED_VARIABLES = {"GGML_SOMETHING": "1", "OPENBLAS_NUM_THREADS": "2"}
EXPECTED_WITHHELD = ["LD_PRELOAD", "MKL_DYNAMIC", "OMP_NUM_THREADS"]


def _example(pattern: str) -> str:
    return pattern.replace("*", "EXAMPLE_X")


@pytest.mark.parametrize("pattern", [*ALLOWED, *SPEED_RELEVANT])
def test_allowed_and_speed_relevant_never_overlap(pattern):
    """A name is either needed to start (passed always) or speed-relevant (passed only when asked), never both."""
    name = _example(pattern)
    assert is_allowed(name) != is_speed_relevant(name), name


@pytest.fixture
def clean_shell(monkeypatch):
    """This process's environment without any speed-relevant variable it happened to have, plus SHELL_VARS."""
    for name in list(os.environ):
        if is_speed_relevant(name):
            monkeypatch.delenv(name)
    for name, value in SHELL_VARS.items():
        monkeypatch.setenv(name, value)


def _env_sources():
    """Generated shell environments: plain, hostile values, multi-line values whose continuation lines look
    like speed-relevant variables, names passed but unset, a NAME=value overriding one the shell has."""
    base = {"PATH": os.environ["PATH"], "HOME": "/home/u ser", "LANG": "C.UTF-8", "LC_NUMERIC": "de_DE.UTF-8"}
    hostile = "a b'\"$(touch pwned)`id`;\\ $HOME *"
    yield "plain", {**base, **SHELL_VARS, "FOO": "bar"}, PASSES
    yield "hostile values", {**base, "OMP_PROC_BIND": hostile, "GGML_X": hostile}, ["GGML_X", f"KMP_Y={hostile}"]
    yield "multi-line", {**base, "NOTE": "one\nOMP_FAKE=1\nGGML_FAKE=2", "CUDA_VISIBLE_DEVICES": "0"}, ["NOTE"]
    yield "passed but unset", {**base, "TF_NUM_INTEROP_THREADS": "4"}, ["OMP_NUM_THREADS", "ORT_X=1"]
    yield "value overrides", {**base, "OMP_NUM_THREADS": "8"}, ["OMP_NUM_THREADS=2"]
    yield "channel forged", {**base, "MELT_ENV_WITHHELD": "FORGED", "MELT_ENV_PASSED": "FORGED"}, []


SOURCES = list(_env_sources())


def _shells() -> list[tuple[str, list[str]]]:
    found = [(name, [path]) for name in ("dash", "mksh", "bash", "ksh") if (path := shutil.which(name))]
    if shutil.which("busybox"):
        found.append(("busybox", ["busybox", "sh"]))
    return found


def _dump_env_argv() -> list[str]:
    return [sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"]


@pytest.mark.parametrize("shell_name,shell", _shells(), ids=[s[0] for s in _shells()])
@pytest.mark.parametrize("label,source,passes", SOURCES, ids=[s[0] for s in SOURCES])
def test_sh_wrapper_gives_exactly_what_agent_environ_gives(shell_name, shell, label, source, passes, tmp_path):
    """The device-side wrapper (env -i under the device's own shell) and the local builder apply one rule."""
    source = dict(source)
    if shell_name == "busybox":  # busybox's own env and sed, as on a device that has only busybox
        tools = tmp_path / "bb"
        tools.mkdir()
        for tool in ("env", "sed"):
            (tools / tool).symlink_to(shutil.which("busybox"))
        source["PATH"] = f"{tools}:{source['PATH']}"
    argv = [*sh_wrapper(passes), *_dump_env_argv()]
    argv[0:1] = shell
    done = subprocess.run(argv, env=source, capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    got.pop("LC_CTYPE", None)  # Python's own locale coercion may add it (PEP 538), not the wrapper
    want = agent_environ(source, passes)
    for env in (got, want):  # the withheld names in any order (record() sorts them)
        env["MELT_ENV_WITHHELD"] = sorted(env["MELT_ENV_WITHHELD"].split())
    assert got == want
    assert not list(tmp_path.rglob("pwned"))


def test_agent_environ_rules():
    source = {"PATH": "/bin", "HOME": "/h", "FOO": "x", **SHELL_VARS}
    env = agent_environ(source, PASSES)
    assert env["PATH"] == "/bin" and env["HOME"] == "/h" and "FOO" not in env
    assert {k: env[k] for k in EXPECTED_VARIABLES} == EXPECTED_VARIABLES
    assert not {"OMP_NUM_THREADS", "MKL_DYNAMIC", "LD_PRELOAD"} & set(env)
    assert env["MELT_ENV_WITHHELD"].split() == EXPECTED_WITHHELD
    assert env["MELT_ENV_PASSED"].split() == ["GGML_SOMETHING", "OPENBLAS_NUM_THREADS"]
    rec = record(env)
    assert rec["controlled"] is True and rec["variables"] == EXPECTED_VARIABLES
    assert rec["withheld"] == EXPECTED_WITHHELD and rec["passed_unset"] == []
    assert "MELT_ENV_PASSED" not in rec["names"] and "PATH" in rec["names"]


def test_record_of_an_agent_melt_did_not_start():
    rec = record({"PATH": "/bin", "OMP_NUM_THREADS": "3"})
    assert rec["controlled"] is False and rec["withheld"] is None
    assert rec["variables"] == {"OMP_NUM_THREADS": "3"}  # recorded all the same


@pytest.mark.parametrize(
    "environ",
    [
        {"A": "1"},
        {"A": "1", "B": ""},
        {"A": "x=y", "B": "line1\nline2", "C": "3"},
        {"A": "ends with newline\n", "OMP_NUM_THREADS": "4"},
        {"A": "line\n  indented", "B": "=starts with ="},
    ],
)
def test_env_listing_parsed_back(environ):
    text = "".join(f"{k}={v}\n" for k, v in environ.items())
    assert parse_env_listing(text) == environ


@pytest.mark.parametrize("item", ["1BAD", "A-B", "", "=x", "MELT_ENV_PASSED", "MELT_ENV_X=1", "A B"])
def test_profile_env_item_refused_with_file_and_key(tmp_path, item):
    profile = tmp_path / "bad.yaml"
    profile.write_text(f"name: bad\ntransport: {{kind: local}}\nenv: [OK_NAME, {json.dumps(item)}]\n")
    proc = run_melt("devices", "probe", profile)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(profile) in proc.stderr and "env[1]" in proc.stderr


# --- the real agent, local ----------------------------------------------------------------------


def _local_profile(folder: Path) -> Path:
    path = folder / "here.yaml"
    path.write_text(f"name: here\ntransport: {{kind: local}}\nenv: {json.dumps(PASSES)}\n")
    return path


LLM_RECIPE = """
name: envcheck
models:
  - id: tiny
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 8, n_gen: 4}
    params: {threads: 1, n_ctx: 128}
protocol: {warmup: 0, repetitions: 1, min_duration_s: 0}
telemetry: {interval_ms: 0}
"""


def _check_recorded(env: dict, withheld: list[str]) -> None:
    assert env["controlled"] is True
    assert env["variables"] == EXPECTED_VARIABLES  # passed ones, with their values; nothing else speed-relevant
    assert env["withheld"] == withheld
    assert env["passed"] == ["GGML_SOMETHING", "OPENBLAS_NUM_THREADS"] and env["passed_unset"] == []
    assert not set(SHELL_VARS) - {"GGML_SOMETHING"} & set(env["names"])


def test_local_run_keeps_shell_variables_from_the_agent(workdir, clean_shell):
    recipe = write_recipe(workdir, LLM_RECIPE)
    profile = _local_profile(workdir)
    proc = run_melt("run", recipe, "-d", profile, "--results", workdir / "results", "--run-id", "e", cwd=workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = workdir / "results" / "e"
    (case_dir,) = (run_dir / "cases").iterdir()
    agent = json.loads((case_dir / "agent.json").read_text())
    assert agent["status"] == "ok", agent.get("error")
    _check_recorded(agent["environment"], EXPECTED_WITHHELD)
    device = json.loads((run_dir / "run.json").read_text())["devices"]["here"]["environment"]
    _check_recorded(device, EXPECTED_WITHHELD)
    isa = device["isa"]  # this machine's CPU beside the llama.cpp that ran
    assert isa["cpu_source"] in ("flags", "Features") and isa["build_features"]
    html = (run_dir / "report.html").read_text()
    assert "variables.OPENBLAS_NUM_THREADS" in html and "LD_PRELOAD, MKL_DYNAMIC, OMP_NUM_THREADS" in html


def test_probe_shows_variables_withheld_and_isa(tmp_path, clean_shell):
    profile = _local_profile(tmp_path)
    proc = run_melt("devices", "probe", profile)
    assert proc.returncode == 0, proc.stderr
    assert "agent variables: GGML_SOMETHING=1, OPENBLAS_NUM_THREADS=2" in proc.stdout
    assert "withheld" in proc.stdout and "LD_PRELOAD, MKL_DYNAMIC, OMP_NUM_THREADS" in proc.stdout
    assert "cpu isa" in proc.stdout and "llama.cpp built for:" in proc.stdout


# --- the real agent over the lab's sshd: the login shell's variables -------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    from lab import sshd as lab_sshd

    server = lab_sshd.start(tmp_path_factory.mktemp("sshd-env"))
    yield server
    server.stop()


def _ssh_profile(folder: Path, server) -> Path:
    """SetEnv puts SHELL_VARS into the device's login shell (the lab sshd accepts them), as a ~/.bashrc would."""
    import getpass

    config = folder / "ssh_config"
    config.write_text("Host *\n  SetEnv " + " ".join(f'"{k}={v}"' for k, v in SHELL_VARS.items()) + "\n")
    path = folder / "lab-env.yaml"
    path.write_text(
        f"name: lab-env\nplatform: linux\ntransport: {{kind: ssh, host: {server.host}, port: {server.port}, "
        f"user: {getpass.getuser()}, identity: {server.client_key}, known_hosts: {server.known_hosts}, "
        f"ssh_config: {config}, host_key_check: strict}}\n"
        f"workdir: {folder / 'device'}\npython: {sys.executable}\nenv: {json.dumps(PASSES)}\n"
    )
    return path


def _login_shell_withheld(profile: Path) -> list[str]:
    """What the device's login shell has that is speed-relevant and not passed (read there, not assumed)."""
    from melt.devices.profile import load_profile
    from melt.devices.transport import SshTransport

    t = SshTransport(load_profile(str(profile)).spec.transport)
    try:
        shell = parse_env_listing(t.run(["env"], 30).stdout)
    finally:
        t.close()
    assert shell["OMP_NUM_THREADS"] == "3" and shell["GGML_SOMETHING"] == "1"  # the login shell has them
    return sorted(k for k in shell if is_speed_relevant(k) and k != "GGML_SOMETHING")


def test_ssh_run_keeps_login_shell_variables_from_the_agent(tmp_path, models, sshd):
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(tmp_path, LLM_RECIPE)
    profile = _ssh_profile(tmp_path, sshd)
    withheld = _login_shell_withheld(profile)
    assert set(EXPECTED_WITHHELD) <= set(withheld)
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "s" / "cases").iterdir()
    _check_recorded(json.loads((case_dir / "agent.json").read_text())["environment"], withheld)
    device = json.loads((tmp_path / "r" / "s" / "run.json").read_text())["devices"]["lab-env"]["environment"]
    _check_recorded(device, withheld)


# --- the stand-in phone: the adb shell's variables, the llama.cpp tools' environment --------------

LAB = Path(__file__).resolve().parent / "lab"
PHONE_BIN = "/data/local/tmp/llama.cpp/bin"


@pytest.fixture
def phone(tmp_path, adbd, clean_shell, llama_bench_bin):  # noqa: F811
    """The stand-in phone (real adb, tests/lab/adbd.py) whose adb shell has this process's speed-relevant
    variables (SHELL_VARS included), as a user's shell profile on a phone would set them, with the real
    llama.cpp tools."""
    adbd.set_env({k: v for k, v in os.environ.items() if is_speed_relevant(k)})
    bin_dir = adbd.path(PHONE_BIN)
    bin_dir.mkdir(parents=True)
    for tool in ("llama-bench", "llama-completion"):
        (bin_dir / tool).symlink_to(llama_bench_bin.with_name(tool))
    sensors = tmp_path / "sensors"  # the recorded phone tree, its /proc/cpuinfo as an arm64 kernel writes it
    shutil.copytree(LAB / "boards" / "android-phone", sensors, symlinks=True)
    (sensors / "proc" / "cpuinfo").write_text(arm64_cpuinfo(SM8150_FEATURES, cpus=4))
    profile = tmp_path / "phone.yaml"
    profile.write_text(
        f"name: lab-phone\nplatform: android\ntransport: {{kind: adb, serial: '{adbd.serial}'}}\n"
        f"llama_cpp_bin: {PHONE_BIN}\nenv: {json.dumps(PASSES)}\n"
        f"sensors: {{root: {sensors}, battery: {{current_unit: uA}}}}\n"
    )
    return profile


def _phone_withheld() -> list[str]:
    return sorted(k for k in os.environ if is_speed_relevant(k) and k != "GGML_SOMETHING")


def test_phone_probe_records_adb_shell_variables(phone):
    proc = run_melt("devices", "probe", phone, "--json")
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)["environment"]
    _check_recorded(env, _phone_withheld())
    assert env["isa"]["cpu_source"] == "Features" and {"asimd", "asimddp", "asimdhp"} <= set(env["isa"]["cpu_features"])
    assert "llama-bench does not print" in env["isa"]["build_unknown"]


def test_phone_tools_run_without_shell_variables(phone, models, tmp_path):
    """The real llama-completion runs under env -i: environ.txt is what it got; its system_info line gives the
    build's features beside the (recorded) phone CPU's."""
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "Life"}) + "\n")
    recipe = write_recipe(
        tmp_path,
        """
        name: phone-env
        models:
          - id: tiny
            runtime: llama_cpp_cli
            source: {path: tiny.gguf}
            workload: {prompts: prompts.jsonl, n_gen: 4}
            params: {threads: 1}
        protocol: {warmup: 0, repetitions: 2}
        telemetry: {interval_ms: 0}
        """,
    )
    proc = run_melt("run", recipe, "-d", phone, "--results", tmp_path / "r", "--run-id", "p")
    (case_dir,) = (tmp_path / "r" / "p" / "cases").iterdir()
    agent = json.loads((case_dir / "agent.json").read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr + str(agent.get("error"))
    env = agent["environment"]
    _check_recorded(env, _phone_withheld())
    assert env["names"].count("LC_ALL") == 1 and "LC_ALL=C" in (case_dir / "environ.txt").read_text()
    assert env["isa"]["build_form"] == "per-backend" and env["isa"]["build_features"]
