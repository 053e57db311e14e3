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
        f"workdir: {folder / 'device work'}\npython: {sys.executable}\n"
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
