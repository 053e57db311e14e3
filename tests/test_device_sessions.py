"""Nothing melt starts outlives its case, on any transport: Ctrl-C, a cut link and a case deadline each
leave no process of the run on the device (asked with `ps` there, through the device's own transport),
and the next run finds the device to itself; one run at a time on a device (a lock, taken over when its
melt is gone); the case's one deadline names the step that ran out; llama.cpp's tools run over SSH on a
board with no Python."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import run_melt, spawn_melt, wait_for_cases, write_recipe
from lab import sshd as lab_sshd
from test_adb import adbd, phone  # noqa: F401 - the stand-in phone (tests/lab/adbd.py) and its adbd
from test_remote_ssh import ssh_profile

from melt.devices.device import Device
from melt.devices.profile import load_profile


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = lab_sshd.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def linked_sshd(tmp_path_factory):
    server = lab_sshd.start_in_netns(tmp_path_factory.mktemp("netns-sshd"), index=8)
    yield server
    server.stop()


def device_procs(profile: Path, marker: str) -> list[str]:
    """`ps` on the device, through its transport: the command lines that contain marker (this test's ps
    itself left out)."""
    device = Device(load_profile(str(profile)))
    try:
        done = device.t.run(["ps", "-ww", "-eo", "pid,pgid,args"], 20)
    finally:
        device.t.close()
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines()[1:] if marker in line and " ps -ww" not in line]


def wait_for_procs(profile: Path, marker: str, timeout_s: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = device_procs(profile, marker)
        if any("melt-agent" in line or "llama-bench" in line for line in found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"no process with {marker!r} on the device within {timeout_s} s")


def onnx_recipe(
    folder: Path, models, name: str, min_duration_s: float, timeout_s: float = 300, params="", cooldown_s: float = 0
) -> Path:
    folder.mkdir(exist_ok=True)
    if not (folder / "static.onnx").exists():
        (folder / "static.onnx").symlink_to(models["static_onnx"])
    return write_recipe(
        folder,
        f"""
        name: {name}
        models:
          - id: static
            runtime: onnxruntime
            source: {{path: static.onnx}}
            {params}
        protocol: {{warmup: 0, repetitions: 3, min_duration_s: {min_duration_s}, timeout_s: {timeout_s},
                    cooldown_s: {cooldown_s}}}
        telemetry: {{interval_ms: 100, idle_s: 0.2}}
        """,
    )


def tools_recipe(folder: Path, models, prompt: int = 16, n_gen: int = 8, repetitions: int = 2) -> Path:
    """A llama_cpp_cli recipe on the tiny GGUF (llama-bench on the device)."""
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    return write_recipe(
        folder,
        f"""
        name: tools
        models:
          - id: tiny
            runtime: llama_cpp_cli
            source: {{path: tiny.gguf}}
            workload: {{prompt_tokens: [{prompt}], n_gen: {n_gen}}}
            params: {{threads: 1}}
        protocol: {{warmup: 0, repetitions: {repetitions}}}
        telemetry: {{interval_ms: 100, idle_s: 0.2}}
        """,
    )


def _seconds(entry: dict) -> float:
    return (datetime.fromisoformat(entry["ended_at"]) - datetime.fromisoformat(entry["started_at"])).total_seconds()


def test_ctrl_c_over_ssh_leaves_nothing_on_the_device_then_resume_runs_alone(tmp_path, models, sshd):
    recipe = onnx_recipe(tmp_path, models, "intr", 2, params="params: {intra_op_threads: [1, 2]}")
    profile = ssh_profile(tmp_path, sshd, name="lab-intr")
    results = tmp_path / "r"
    proc = spawn_melt("run", recipe, "-d", profile, "--results", results, "--run-id", "i")
    wait_for_cases(results / "i" / "run.json", lambda cases: any(c["status"] == "running" for c in cases), 60)
    before = wait_for_procs(profile, "/runs/i/")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert device_procs(profile, "/runs/i/") == [], before  # the agent's tree, ended through a second connection
    assert not list((tmp_path / "device work dir" / "spawned").iterdir())  # and confirmed: no state left

    again = run_melt("run", recipe, "-d", profile, "--results", results, "--run-id", "i", "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    run = json.loads((results / "i" / "run.json").read_text())
    assert run["status"] == "complete"
    assert "notes" not in run["devices"]["lab-intr"]  # nothing was left to end, and the lock was released


def test_link_cut_leaves_the_agent_running_until_the_next_connection_ends_it(tmp_path, models, linked_sshd):
    """A cut link cannot end the agent (it runs in its own session on the device); the next melt on the device
    ends it before its first case starts, and says so in run.json."""
    # a cool-down of 40 s after the trials: the case outlives the link by far
    recipe = onnx_recipe(tmp_path, models, "cut", 0.5, cooldown_s=40)
    profile = ssh_profile(tmp_path, linked_sshd, name="lab-far")
    results = tmp_path / "r"
    proc = spawn_melt("run", recipe, "-d", profile, "--results", results, "--run-id", "c")
    wait_for_cases(results / "c" / "run.json", lambda cases: any(c["status"] == "running" for c in cases), 60)
    wait_for_procs(profile, "/runs/c/")
    linked_sshd.cut()
    try:  # every remote call has a deadline: melt gives the case up by itself
        wait_for_cases(results / "c" / "run.json", lambda cases: all(c["status"] == "failed" for c in cases), 90)
    finally:
        linked_sshd.restore()
    left = device_procs(profile, "/runs/c/")
    assert any("melt-agent" in line for line in left), "the cut case's agent should still run on the device"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    run = json.loads((results / "c" / "run.json").read_text())
    ((case_id, entry),) = run["cases"].items()
    assert "link lost" in entry["reason"] and "could not be confirmed ended" in entry["reason"], entry

    again = run_melt("run", recipe, "-d", profile, "--results", results, "--run-id", "c", "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    run = json.loads((results / "c" / "run.json").read_text())
    notes = run["devices"]["lab-far"]["notes"]
    assert any(f"ended processes left running on the device by c case {case_id}" in n for n in notes), notes
    assert run["cases"][case_id]["status"] == "ok" and device_procs(profile, "/runs/c/") == []


def test_case_deadline_ends_the_tree_on_the_device_within_its_budget(tmp_path, models, sshd):
    recipe = onnx_recipe(tmp_path, models, "late", 30, timeout_s=6)
    profile = ssh_profile(tmp_path, sshd, name="lab-late")
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "d")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    ((_, entry),) = json.loads((tmp_path / "r" / "d" / "run.json").read_text())["cases"].items()
    assert entry["status"] == "failed", entry
    assert "timed out after 6 s (protocol.timeout_s) during the agent" in entry["reason"]
    assert "its processes on the device were ended" in entry["reason"]
    assert _seconds(entry) <= 6 + 4  # the whole case: provisioning, agent, pull and clean-up (1 s stamps)
    assert device_procs(profile, "/runs/d/") == []


def test_the_step_that_ran_out_is_named(tmp_path, models, sshd):
    """Provisioning comes out of the case's deadline too: a budget spent before the model's push names it."""
    recipe = onnx_recipe(tmp_path, models, "tight", 1, timeout_s=0.001)
    profile = ssh_profile(tmp_path, sshd, name="lab-tight")
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "t")
    assert proc.returncode == 1
    ((_, entry),) = json.loads((tmp_path / "r" / "t" / "run.json").read_text())["cases"].items()
    assert entry["reason"] == "timed out after 0.001 s (protocol.timeout_s) during push of the model", entry


def test_one_run_at_a_time_on_a_device_and_a_dead_run_s_lock_is_taken_over(tmp_path, models, sshd):
    recipe = onnx_recipe(tmp_path, models, "hold", 20)
    profile = ssh_profile(tmp_path, sshd, name="lab-held")
    results = tmp_path / "r"
    first = spawn_melt("run", recipe, "-d", profile, "--results", results, "--run-id", "first")
    wait_for_cases(results / "first" / "run.json", lambda cases: any(c["status"] == "running" for c in cases), 60)
    wait_for_procs(profile, "/runs/first/")

    second = run_melt("run", recipe, "-d", profile, "--results", results, "--run-id", "second")
    assert second.returncode == 1
    ((_, entry),) = json.loads((results / "second" / "run.json").read_text())["cases"].items()
    assert entry["status"] == "failed"
    assert f"in use by melt run first (host {__import__('socket').gethostname()}, pid {first.pid}" in entry["reason"]
    assert "still running" in entry["reason"]

    first.kill()  # killed outright: no clean-up, the lock and the agent stay on the device
    first.communicate(timeout=30)
    assert any("melt-agent" in line for line in device_procs(profile, "/runs/first/"))
    third = run_melt("run", onnx_recipe(tmp_path / "q", models, "quick", 0.2), "-d", profile,
                     "--results", results, "--run-id", "third")  # fmt: skip
    assert third.returncode == 0, third.stdout + third.stderr
    notes = json.loads((results / "third" / "run.json").read_text())["devices"]["lab-held"]["notes"]
    assert any("took over the lock of melt run first (host" in n and f"pid {first.pid}" in n for n in notes), notes
    assert any("ended processes left running on the device by first case" in n for n in notes), notes
    assert device_procs(profile, "/runs/first/") == []
    assert not (tmp_path / "device work dir" / "lock").exists()  # released at the end of the third run


def test_llama_cpp_tools_over_ssh_on_a_board_without_python(tmp_path, models, sshd, llama_bench_bin):
    """runtime llama_cpp_cli on an SSH board whose profile says `python: false` and names llama_cpp_bin: the
    tools session drives the real llama-bench there; no agent is pushed."""
    bin_dir = tmp_path / "board" / "llama.cpp"
    bin_dir.mkdir(parents=True)
    (bin_dir / "llama-bench").symlink_to(llama_bench_bin)
    recipe = tools_recipe(tmp_path, models)
    profile = ssh_profile(tmp_path, sshd, name="lab-yocto", platform="raspberrypi")
    text = profile.read_text().splitlines()
    text = [line for line in text if not line.startswith("python:")] + ["python: false", f"llama_cpp_bin: {bin_dir}"]
    profile.write_text("\n".join(text) + "\n")
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "y")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ((case_id, entry),) = json.loads((tmp_path / "r" / "y" / "run.json").read_text())["cases"].items()
    trials = (tmp_path / "r" / "y" / "cases" / case_id / "trials.jsonl").read_text().splitlines()
    assert sorted(json.loads(t)["test"] for t in trials) == ["pp", "pp", "tg", "tg"]
    assert not list((tmp_path / "device work dir" / "agents").glob("*.pyz"))  # no Python: no agent pushed
    assert list((tmp_path / "device work dir" / "agents").glob("sampler-*.sh"))


def _hanging_bench(home: Path, llama_bench_bin: Path) -> None:
    """The phone's llama-bench: the real one, which then hangs (a child sleeping for 10 minutes), so a case
    outlives any deadline or signal a test sends whatever this machine's speed."""
    bench = home / "data/local/tmp/llama.cpp/bin/llama-bench"
    bench.unlink()
    bench.write_text(
        f'#!/system/bin/sh\ncase "$1" in -h|--help) exec \'{llama_bench_bin}\' "$@";; esac\n'
        f"'{llama_bench_bin}' \"$@\"\nsleep 600\n"
    )
    bench.chmod(0o755)


def test_ctrl_c_on_a_phone_leaves_nothing_behind(phone, adbd, models, tmp_path, llama_bench_bin):  # noqa: F811
    """SIGINT to melt mid-case: melt kills its adb clients and ends the case's tree on the phone through a second
    `adb shell`; nothing of it runs on the phone after (asked with the phone's ps, and from this machine: every
    process in the phone's mount namespace)."""
    home, profile = phone
    _hanging_bench(home, llama_bench_bin)
    recipe = tools_recipe(tmp_path, models)
    results = tmp_path / "r"
    proc = spawn_melt("run", recipe, "-d", profile, "--results", results, "--run-id", "ph")
    before = wait_for_procs(profile, "/runs/ph/")
    assert any("llama-bench" in cmd for cmd in adbd.processes().values()), before
    wait_until_sleeping = time.monotonic() + 60  # llama-bench ran once and hangs: the tree is complete
    while not any(cmd.startswith("sleep 600") for cmd in adbd.processes().values()):
        assert time.monotonic() < wait_until_sleeping, adbd.processes()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert device_procs(profile, "/data/local/tmp/melt") == []
    assert adbd.processes() == {}, before  # nothing at all: the case's tree, the adb shells, the sampler
    assert not list((home / "data/local/tmp/melt/spawned").iterdir())  # and confirmed: no state left


def test_a_phone_case_deadline_ends_its_tree_on_the_phone(phone, adbd, models, tmp_path, llama_bench_bin):  # noqa: F811
    """protocol.timeout_s on a phone: the case fails, named, within its budget, and nothing of it is left."""
    home, profile = phone
    _hanging_bench(home, llama_bench_bin)
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(
        tmp_path,
        """
        name: late
        models:
          - id: tiny
            runtime: llama_cpp_cli
            source: {path: tiny.gguf}
            workload: {prompt_tokens: [16], n_gen: 4}
            params: {threads: 1}
        protocol: {warmup: 0, repetitions: 2, timeout_s: 6}
        telemetry: {interval_ms: 100, idle_s: 0.2}
        """,
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "late")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    ((_, entry),) = json.loads((tmp_path / "r" / "late" / "run.json").read_text())["cases"].items()
    assert entry["status"] == "failed", entry
    assert "timed out after 6 s (protocol.timeout_s) during the llama.cpp tools" in entry["reason"], entry
    assert "its processes on the device were ended" in entry["reason"], entry
    assert _seconds(entry) <= 6 + 4  # the whole case: provisioning, the tools, pull and clean-up (1 s stamps)
    assert adbd.processes() == {}
    assert not list((home / "data/local/tmp/melt/spawned").iterdir())


def test_the_agent_over_adb_on_a_phone_with_python(phone, models, tmp_path):  # noqa: F811
    """A phone with Python (Termux) runs the agent: the same session as SSH and local, over ADB."""
    import sys

    home, profile = phone
    profile.write_text(profile.read_text() + f"python: {sys.executable}\n")
    recipe = onnx_recipe(tmp_path, models, "termux", 0.2)
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "tx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ((case_id, entry),) = json.loads((tmp_path / "r" / "tx" / "run.json").read_text())["cases"].items()
    assert entry["status"] == "ok"
    assert list((home / "data/local/tmp/melt/agents").glob("melt-agent-*.pyz"))  # pushed with adb push
    assert (tmp_path / "r" / "tx" / "cases" / case_id / "trials.jsonl").stat().st_size > 0  # pulled back


def test_llama_cpp_tools_on_local(tmp_path, models, llama_bench_bin):
    """The tools session over the local transport: runtime llama_cpp_cli on this machine, when the local
    profile names llama_cpp_bin."""
    bin_dir = tmp_path / "llama.cpp"
    bin_dir.mkdir()
    (bin_dir / "llama-bench").symlink_to(llama_bench_bin)
    profile = tmp_path / "here.yaml"
    profile.write_text(f"name: here\ntransport: {{kind: local}}\nllama_cpp_bin: {bin_dir}\n")
    recipe = tools_recipe(tmp_path, models)
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "h")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ((case_id, _),) = json.loads((tmp_path / "r" / "h" / "run.json").read_text())["cases"].items()
    metrics = json.loads((tmp_path / "r" / "h" / "cases" / case_id / "metrics.json").read_text())
    assert metrics["summary"]["decode_tok_s"] > 0 and metrics["summary"]["n_trials"] == 2
