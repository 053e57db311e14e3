"""melt as a labgrid client: a real labgrid-coordinator and two labgrid-exporters on loopback publish two real
sshd boards as places; melt reserves, acquires, runs over SSH and releases them, waits for a place someone
else holds (naming the holder), takes over a place from a melt that was killed, and releases on Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import run_melt, spawn_melt, wait_for_cases, write_recipe
from lab import labgrid_lab

BOARDS = Path(__file__).resolve().parent / "lab" / "boards"
PLACES = {"board-a": {"board": "tiny", "slot": "a"}, "board-b": {"board": "tiny", "slot": "b"}}

RECIPE = """
name: lab
models:
  - id: static
    runtime: onnxruntime
    source: {path: tiny_static.onnx}
    params: {intra_op_threads: [1, 2]}
protocol: {warmup: 0, repetitions: 3, min_duration_s: 0.3}
telemetry: {interval_ms: 50, idle_s: 0.2}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = labgrid_lab.start(tmp_path_factory.mktemp("labgrid"), PLACES)
    yield the_lab
    the_lab.stop()


def place_profile(folder: Path, lab, name: str, place: str | None, wait_s: float = 60) -> Path:
    """A melt profile for a place (place None: a pool profile, the sweep names the places)."""
    path = folder / f"{name}.yaml"
    where = f"place: {place}, " if place else ""
    path.write_text(
        f"name: {name}\nplatform: jetson\n"
        f"transport: {{kind: labgrid, {where}coordinator: '{lab.address}', identity: {lab.client_key}, "
        f"known_hosts: {lab.known_hosts}, wait_s: {wait_s}}}\n"
        f"workdir: {folder / ('device work ' + name)}\npython: {sys.executable}\n"
        f"sensors: {{root: {BOARDS / 'jetson-orin-nano'}, tegrastats: /usr/bin/tegrastats}}\n"
    )
    return path


def test_a_run_on_a_place_reserves_acquires_and_releases_it(workdir, lab):
    write_recipe(workdir, RECIPE)
    profile = place_profile(workdir, lab, "lab-a", "board-a")
    proc = run_melt("run", workdir / "recipe.yaml", "-d", profile, "--results", workdir / "r", "--run-id", "one")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((workdir / "r" / "one" / "run.json").read_text())
    record = run["devices"]["lab-a"]["lab"]
    assert record["place"] == "board-a" and record["exporter"] == "exp-board-a"
    assert record["exporter_host"] == socket.getfqdn()  # labgrid's exporter publishes its host's FQDN
    assert record["port"] == lab.boards["board-a"].port
    holds = [c["lab"] for c in run["cases"].values()]
    assert len(holds) == 2 and all(h["released_at"] and h["token"] for h in holds)
    assert set(record["tokens"]) >= {h["token"] for h in holds}  # a reservation per hold, all recorded
    assert lab.acquired_by("board-a") is None  # released at the end
    assert "Reservation" not in lab.client("reservations").stdout  # and no reservation left behind


def write_sweep(folder: Path, lab, name: str, select: str, count: int = 2) -> Path:
    """A sweep over the lab's places matching `select`. The boards are all this machine, so each place gets a
    profile of its own (lab.profiles), with a workdir of its own, as two real boards would have."""
    for place in PLACES:
        place_profile(folder, lab, f"pool-{place}", None)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nlab: {{coordinator: '{lab.address}', select: {select}, count: {count},\n"
        "  profiles: {board-a: pool-board-a.yaml, board-b: pool-board-b.yaml}}\nrecipes: [recipe.yaml]\n"
    )
    return path


def _spans(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Per place: each case's span on the device's monotonic clock (idle baseline to last trial). The boards
    are this machine, so spans of two runs compare."""
    run = json.loads((run_dir / "run.json").read_text())
    spans: dict[str, list[tuple[float, float]]] = {}
    for case_id, entry in run["cases"].items():
        phases = json.loads((run_dir / "cases" / case_id / "agent.json").read_text())["phases"]
        spans.setdefault(entry["lab"]["place"], []).append((phases["idle"][0], phases["trials"][1]))
    return spans


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_a_sweep_over_the_pool_uses_both_places_in_parallel(workdir, lab):
    write_recipe(workdir, RECIPE)
    sweep = write_sweep(workdir, lab, "pool-sweep", "{board: tiny}")
    proc = run_melt("sweep", sweep, "--no-live", "--results", workdir / "r", "--run-id", "p")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((workdir / "r" / "p" / "run.json").read_text())
    assert set(run["devices"]) == {"board-a", "board-b"}  # a device per place, named after it
    assert {c["lab"]["place"] for c in run["cases"].values()} == {"board-a", "board-b"}
    spans = _spans(workdir / "r" / "p")
    assert any(_overlap(a, b) for a in spans["board-a"] for b in spans["board-b"]), "the places ran one after the other"
    assert lab.acquired_by("board-a") is None and lab.acquired_by("board-b") is None


def test_two_sweeps_wanting_one_place_take_turns_on_it(workdir, lab):
    write_recipe(workdir, RECIPE)
    sweeps = [write_sweep(workdir, lab, f"turn-{i}", "{slot: a}", count=1) for i in (1, 2)]
    procs = [spawn_melt("sweep", s, "--no-live", "--results", workdir / "r", "--run-id", s.stem) for s in sweeps]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
    runs = {s.stem: json.loads((workdir / "r" / s.stem / "run.json").read_text()) for s in sweeps}
    windows = []  # every case of both sweeps on board-a, as run.json records it
    for name, run in runs.items():
        assert set(run["devices"]) == {"board-a"}
        for entry in run["cases"].values():
            assert entry["status"] == "ok" and entry["lab"]["place"] == "board-a"
            windows.append((entry["lab"]["acquired_at"], entry["lab"]["released_at"], name))
            windows.append((entry["started_at"], entry["ended_at"], name))
    assert _overlap(*[(r["started_at"], r["ended_at"]) for r in runs.values()]), "the sweeps did not run together"
    for i, a in enumerate(windows):
        for b in windows[i + 1 :]:
            assert a[2] == b[2] or not _overlap(a, b), f"{a} and {b} overlap on one place"
    spans = [s for name in runs for s in _spans(workdir / "r" / name)["board-a"]]
    assert not any(_overlap(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :])
