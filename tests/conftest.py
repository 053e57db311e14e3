"""Shared fixtures: tiny real models (written by the tests), recipe files, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import write_tiny_gguf, write_tiny_onnx, write_tiny_static_onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def _melt_cache(tmp_path_factory):
    """Downloads, hash caches and the `local` device's workdir (its run lock among them) go to this test session's
    temp folder, never to the user's cache: for module-scoped fixtures too (a function-scoped setting came after
    them, so their runs took the user's `local` lock, and two test sessions on one machine refused each other)."""
    before = os.environ.get("MELT_CACHE")
    os.environ["MELT_CACHE"] = str(tmp_path_factory.getbasetemp() / "melt-cache")
    yield
    if before is None:
        os.environ.pop("MELT_CACHE", None)
    else:
        os.environ["MELT_CACHE"] = before


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "gguf": write_tiny_gguf(folder / "tiny.gguf"),
        "onnx": write_tiny_onnx(folder / "tiny_vad.onnx"),
        "static_onnx": write_tiny_static_onnx(folder / "tiny_static.onnx"),
    }


@pytest.fixture
def workdir(tmp_path, models) -> Path:
    """A folder with the tiny models next to where recipes are written."""
    for _name, path in models.items():
        (tmp_path / path.name).symlink_to(path)
    return tmp_path


def write_recipe(folder: Path, body: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@pytest.fixture
def cli():
    """Invoke the real click app in-process; returns (exit_code, output incl. stderr)."""
    from cli import cli as app

    def invoke(*args: str):
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


def run_melt(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed `melt` command in a real process."""
    melt = Path(sys.executable).with_name("melt")
    cmd = [str(melt)] if melt.exists() else [sys.executable, str(ROOT / "cli.py")]
    return subprocess.run(
        [*cmd, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def spawn_melt(*args: str) -> subprocess.Popen:
    """The installed `melt` in a background process, for a test to interrupt or cut mid-run."""
    melt = Path(sys.executable).with_name("melt")
    return subprocess.Popen([str(melt), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_cases(run_json: Path, ready, timeout_s: float, poll_s: float = 0.05) -> None:
    """Poll run.json until ready(list of case entries) holds, or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            cases = list(json.loads(run_json.read_text())["cases"].values())
        except (OSError, ValueError, KeyError):  # not written yet, or mid-replace
            cases = []
        if ready(cases):
            return
        time.sleep(poll_s)


@pytest.fixture(scope="session")
def llama_bench_bin() -> Path:
    """llama.cpp's own llama-bench, built from the llama.cpp that llama-cpp-python vendors (the
    phones' runtime, run here by the stand-in phone), with llama-completion and llama-perplexity beside it.
    Built once into the user's cache."""
    out = Path(os.environ.get("LLAMA_BENCH_DIR", Path.home() / ".cache" / "melt" / "llama-bench"))
    binary = out / "llama-bench"
    if not all((out / tool).exists() for tool in ("llama-bench", "llama-completion", "llama-perplexity")):
        env = dict(os.environ, LLAMA_BENCH_DIR=str(out))
        subprocess.run([str(ROOT / "benchmarks" / "build_llama_bench.sh")], check=True, env=env, capture_output=True)
    return binary


class AdbServer:
    """Debian's real adb server on a port of the tests' own (ANDROID_ADB_SERVER_PORT), with a HOME of its own
    for its key: a user's adb server and ~/.android are never touched."""

    def __init__(self, port: int, env: dict):
        self.port, self.env = port, env

    def adb(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["adb", *args], env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def state(self, serial: str) -> str | None:
        """The device's state as `adb devices` lists it (device, offline, unauthorized), None if not listed."""
        for line in self.adb("devices").stdout.splitlines()[1:]:
            name, _, state = line.partition("\t")
            if name == serial:
                return state.strip()
        return None

    def wait_for(self, serial: str, state: str | None, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.state(serial) != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"{serial} is {self.state(serial)!r} in `adb devices`, not {state!r}")
            time.sleep(0.1)

    def connect(self, serial: str, state: str = "device") -> None:
        """`adb connect`, then wait until `adb devices` lists the device as state."""
        self.adb("connect", serial)
        self.wait_for(serial, state)

    def disconnect(self, serial: str) -> None:
        self.adb("disconnect", serial)

    def processes(self) -> list[int]:
        """The pids of this server (its command line names its port)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if entry.name.isdigit() and b"fork-server" in argv and f"tcp:{self.port}".encode() in argv:
                found.append(int(entry.name))
        return found


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory):
    """The adb server the phone tests share, started on a free port and killed at the end of the session.
    Every `adb` this session starts (melt's included) finds it through ANDROID_ADB_SERVER_PORT."""
    import shutil
    import socket

    if not shutil.which("adb") or not shutil.which("unshare"):
        pytest.fail("no adb or unshare: run scripts/lab_packages.sh (Debian packages adb, util-linux)")
    folder = tmp_path_factory.mktemp("adb-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # an environment of its own: the server outlives each test, so nothing a test sets may ride along
    env = {"PATH": os.environ["PATH"], "ANDROID_ADB_SERVER_PORT": str(port), "HOME": str(folder), "TMPDIR": str(folder)}
    server = AdbServer(port, env)
    patch = pytest.MonkeyPatch()
    patch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    try:
        started = server.adb("start-server", timeout_s=60)
        assert started.returncode == 0, started.stderr
        yield server
    finally:
        server.adb("kill-server")
        for pid in server.processes():  # kill-server is asked; a server that did not go is ended
            os.kill(pid, 9)
        patch.undo()


def read_trace(case_dir: Path) -> dict[str, list[float]]:
    """trace.csv as columns of the values read (empty cells left out)."""
    import csv

    with (case_dir / "trace.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows if r[k] != ""] for k in rows[0]}


def run_static_case(
    folder: Path, models: dict, device: Path, repetitions: int = 3, min_duration_s: float = 0.5, idle_s: float = 0.3
) -> Path:
    """`melt run` of the tiny static ONNX model on one device (sampling at 50 ms); its one case folder."""
    (folder / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(
        folder,
        f"""
        name: static
        models:
          - id: static
            runtime: onnxruntime
            source: {{path: static.onnx}}
        protocol: {{warmup: 1, repetitions: {repetitions}, min_duration_s: {min_duration_s}}}
        telemetry: {{interval_ms: 50, idle_s: {idle_s}}}
        """,
    )
    proc = run_melt("run", recipe, "-d", device, "--results", folder / "results", "--run-id", "static")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (folder / "results" / "static" / "cases").iterdir()
    return case_dir
