"""Remote devices over a real sshd on loopback: the agent zipapp and models are provisioned by
content hash, cases run there and come back in the same results layout as `local`; a changed host
key and an unreachable host are refused with the reason, and the run goes on."""

from __future__ import annotations

import csv
import getpass
import json
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from conftest import run_melt, write_recipe
from lab import sshd as lab_sshd

BOARDS = Path(__file__).resolve().parent / "lab" / "boards"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = lab_sshd.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


BOARD_SENSORS = {
    "jetson": f"sensors: {{root: {BOARDS / 'jetson-orin-nano'}, tegrastats: /usr/bin/tegrastats}}\n",
    "raspberrypi": f"sensors: {{root: {BOARDS / 'raspberry-pi-5'}, vcgencmd: /usr/bin/vcgencmd}}\n",
}


def ssh_profile(
    folder: Path, server, name: str = "lab-jetson", port: int | None = None, known_hosts=None, platform="jetson",
    identity=None,
) -> Path:  # fmt: skip
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nplatform: {platform}\n"
        f"transport: {{kind: ssh, host: {server.host}, port: {port or server.port}, user: {getpass.getuser()}, "
        f"identity: {identity or server.client_key}, known_hosts: {known_hosts or server.known_hosts}, "
        "host_key_check: strict}\n"
        f"workdir: {folder / 'device work dir'}\n"  # a space in the path: quoting must hold
        f"python: {sys.executable}\n" + BOARD_SENSORS[platform]
    )
    return path


RECIPE = """
name: remote
models:
  - id: tiny-llm
    runtime: llama_cpp
    source: {path: "tiny model $(touch pwned) `id`; x.gguf"}
    workload: {prompt_tokens: [16, 32], n_gen: 8}
    params: {threads: 1, n_ctx: 256}
  - id: static
    runtime: onnxruntime
    source: {path: static.onnx}
protocol: {warmup: 1, repetitions: 3, min_duration_s: 0.3}
telemetry: {interval_ms: 50, idle_s: 0.3}
"""


def test_full_run_over_ssh(tmp_path, models, sshd):
    hostile = tmp_path / "tiny model $(touch pwned) `id`; x.gguf"
    hostile.symlink_to(models["gguf"])
    (tmp_path / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(tmp_path, RECIPE)
    profile = ssh_profile(tmp_path, sshd)
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "results", "--run-id", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("pwned"))  # the file name stayed inert on both ends
    run_dir = tmp_path / "results" / "r"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["devices"]["lab-jetson"]["profile"]["transport"]["kind"] == "ssh"
    assert run["devices"]["lab-jetson"]["sensors"]["power_method"] == "ina3221"
    assert run["devices"]["lab-jetson"]["environment"]["workdir_free_mb"] > 0
    with (run_dir / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["device"] == "lab-jetson" and r["power_method"] == "ina3221" for r in rows)
    for case_dir in (run_dir / "cases").iterdir():
        for name in ("case.json", "trials.jsonl", "agent.json", "metrics.json", "trace.csv", "sensors.json"):
            assert (case_dir / name).is_file(), (case_dir, name)
        case = json.loads((case_dir / "case.json").read_text())
        assert "device work dir/models/" in case["model_path"]  # the device's own copy, found by hash
    # the device holds each model once, verified, under its sha256
    models_dir = tmp_path / "device work dir" / "models"
    assert len(list(models_dir.glob("*/*.verified"))) == 2


def test_second_run_sends_nothing_again(tmp_path, models, sshd):
    (tmp_path / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(
        tmp_path,
        """
        name: again
        models:
          - id: static
            runtime: onnxruntime
            source: {path: static.onnx}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0}
        telemetry: {interval_ms: 0}
        """,
    )
    profile = ssh_profile(tmp_path, sshd)
    assert run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "a").returncode == 0
    marker = next((tmp_path / "device work dir" / "models").glob("*/*.verified"))
    agent = next((tmp_path / "device work dir" / "agents").glob("*.pyz"))
    before = (marker.stat().st_mtime_ns, agent.stat().st_mtime_ns)
    time.sleep(0.05)
    assert run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "b").returncode == 0
    assert (marker.stat().st_mtime_ns, agent.stat().st_mtime_ns) == before


def test_changed_host_key_is_refused(tmp_path, models, sshd):
    other = lab_sshd.keygen(tmp_path / "other_host_key")
    pub = other.with_suffix(".pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {pub[0]} {pub[1]}\n")
    profile = ssh_profile(tmp_path, sshd, known_hosts=known)
    proc = run_melt("devices", "probe", profile)
    assert proc.returncode == 1
    assert "host key is not the one on record" in proc.stderr and "ssh-keygen -R" in proc.stderr


def test_unreachable_device_fails_its_cases_and_the_run_goes_on(tmp_path, models, sshd):
    (tmp_path / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(
        tmp_path,
        """
        name: two
        models:
          - id: static
            runtime: onnxruntime
            source: {path: static.onnx}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0}
        telemetry: {interval_ms: 0}
        """,
    )
    down = ssh_profile(tmp_path, sshd, name="lab-down", port=lab_sshd._free_port())
    up = ssh_profile(tmp_path, sshd, name="lab-up")
    proc = run_melt("run", recipe, "-d", down, "-d", up, "--results", tmp_path / "r", "--run-id", "u")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = json.loads((tmp_path / "r" / "u" / "run.json").read_text())
    by_device = {c["device"]: c for c in run["cases"].values()}
    assert by_device["lab-down"]["status"] == "failed" and "unreachable" in by_device["lab-down"]["reason"]
    assert by_device["lab-up"]["status"] == "ok"


def test_reachability_says_why(tmp_path, sshd):
    from melt.devices.device import reachable
    from melt.devices.profile import load_profile

    assert reachable(load_profile(str(ssh_profile(tmp_path, sshd)))) == (True, "")
    ok, why = reachable(load_profile(str(ssh_profile(tmp_path, sshd, name="lab-off", port=lab_sshd._free_port()))))
    assert not ok and "Connection refused" in why


def test_raspberry_pi_over_ssh(tmp_path, models, sshd):
    (tmp_path / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(
        tmp_path,
        """
        name: pi
        models:
          - id: static
            runtime: onnxruntime
            source: {path: static.onnx}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0.5}
        telemetry: {interval_ms: 50, idle_s: 0.3}
        """,
    )
    profile = ssh_profile(tmp_path, sshd, name="lab-pi", platform="raspberrypi")
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "pi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "r" / "pi" / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["device"] == "lab-pi" and row["power_method"] == "pmic" and row["throttled"] == "true"


def test_refused_authentication_says_so(tmp_path, sshd):
    stranger = lab_sshd.keygen(tmp_path / "stranger_key")
    proc = run_melt("devices", "probe", ssh_profile(tmp_path, sshd, identity=stranger))
    assert proc.returncode == 1 and "authentication refused" in proc.stderr and "check user and identity" in proc.stderr


def test_full_device_disk_is_refused_before_copying(tmp_path, models, sshd):
    """A workdir on a 1 MB tmpfs: the model does not fit, the case fails naming the shortfall."""
    work = tmp_path / "small disk"
    work.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(work)]).returncode != 0:
        pytest.fail("cannot mount a tmpfs here (the lab runs as root)")
    try:
        big = tmp_path / "big.onnx"
        model = onnx.load(models["static_onnx"])
        model.doc_string = "padding " * 375_000  # 3 MB, and still a model melt can read (it checks the inputs)
        onnx.save(model, big)
        recipe = write_recipe(
            tmp_path,
            """
            name: full
            models:
              - id: big
                runtime: onnxruntime
                source: {path: big.onnx}
            protocol: {warmup: 0, repetitions: 1, min_duration_s: 0}
            telemetry: {interval_ms: 0}
            """,
        )
        profile = ssh_profile(tmp_path, sshd, name="lab-full")
        text = profile.read_text().replace(f"workdir: {tmp_path / 'device work dir'}", f"workdir: {work}")
        profile.write_text(text)
        proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "f")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (entry,) = json.loads((tmp_path / "r" / "f" / "run.json").read_text())["cases"].values()
        assert entry["status"] == "failed" and "MB short" in entry["reason"] and "free space" in entry["reason"]
    finally:
        subprocess.run(["umount", str(work)])


def test_files_go_without_rsync_on_the_device(tmp_path, sshd):
    """A device with no rsync: files stream through ssh (push) and come back as a tar (pull)."""
    from melt.devices.profile import load_profile
    from melt.devices.transport import SshTransport

    t = SshTransport(load_profile(str(ssh_profile(tmp_path, sshd))).spec.transport)
    t._rsync = False  # as found on a device without rsync
    try:
        src = tmp_path / "model with spaces.bin"
        src.write_bytes(bytes(range(256)) * 1000)
        remote = tmp_path / "device side"
        remote.mkdir()
        t.push(src, str(remote / "copy $(x).bin"), 30)
        assert (remote / "copy $(x).bin").read_bytes() == src.read_bytes()
        (remote / "sub").mkdir()
        (remote / "sub" / "trace.csv").write_text("t_s\n1.0\n")
        back = tmp_path / "back"
        t.pull_dir(str(remote), back, 30)
        assert (back / "copy $(x).bin").read_bytes() == src.read_bytes()
        assert (back / "sub" / "trace.csv").read_text() == "t_s\n1.0\n"
    finally:
        t.close()
