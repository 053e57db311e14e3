"""melt as a labgrid client: a real labgrid-coordinator and two labgrid-exporters on loopback publish two real
sshd boards as places; melt reserves, acquires, runs over SSH and releases them, waits for a place someone
else holds (naming the holder), takes over a place from a melt that was killed, and releases on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import ROOT, run_melt, spawn_melt, wait_for_cases, write_recipe
from lab import labgrid_lab
from test_nightly_workflow import WORKFLOW

from melt.lab.client import close_all
from melt.plan import plan_sweep

BOARDS = Path(__file__).resolve().parent / "lab" / "boards"
# board-a is also in the nightly pool, its static facts those of the shipped jetson-orin-nano profile
PLACES = {
    "board-a": {"board": "tiny", "slot": "a", "pool": "nightly", "melt_profile": "jetson-orin-nano"},
    "board-b": {"board": "tiny", "slot": "b"},
}

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
    holds = {}  # per place, its cases' holds (acquired to released, as run.json records them)
    for entry in run["cases"].values():
        holds.setdefault(entry["lab"]["place"], []).append((entry["lab"]["acquired_at"], entry["lab"]["released_at"]))
    assert any(_overlap(a, b) for a in holds["board-a"] for b in holds["board-b"]), "one place after the other"
    # run.json: per device the place, its exporter and exporter host, and every reservation token
    record = run["devices"]["board-a"]["lab"]
    assert record["place"] == "board-a" and record["exporter"] == "exp-board-a"
    assert record["exporter_host"] == socket.getfqdn()  # labgrid's exporter publishes its host's FQDN
    assert record["port"] == lab.boards["board-a"].port and record["coordinator"] == lab.address
    mine = [c["lab"] for c in run["cases"].values() if c["lab"]["place"] == "board-a"]
    assert len(mine) == 2 and all(h["released_at"] and h["token"] for h in mine)
    assert set(record["tokens"]) >= {h["token"] for h in mine} and len(set(record["tokens"])) == 3  # open + 2 cases
    # every place released, no reservation left behind
    assert lab.acquired_by("board-a") is None and lab.acquired_by("board-b") is None
    assert "Reservation" not in lab.client("reservations").stdout


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


ONE_CASE = RECIPE.replace("[1, 2]", "1")
LONG_CASE = RECIPE.replace("[1, 2]", "1").replace(
    "min_duration_s: 0.3", "min_duration_s: 120, max_repetitions: 100000000"
)


def test_a_held_place_is_waited_for_and_the_wait_ends_naming_the_holder(workdir, lab):
    write_recipe(workdir, ONE_CASE)
    lab.client("-p", "board-b", "acquire", user="alice", host="desk-7")
    try:
        profile = place_profile(workdir, lab, "lab-b", "board-b", wait_s=2)
        started = time.monotonic()
        proc = run_melt("run", workdir / "recipe.yaml", "-d", profile, "--results", workdir / "r", "--run-id", "w")
        assert time.monotonic() - started >= 2  # it waited
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "lab-b: waiting for place board-b, acquired by alice on desk-7" in proc.stdout
        run = json.loads((workdir / "r" / "w" / "run.json").read_text())
        (case,) = run["cases"].values()
        assert "place board-b is acquired by alice on desk-7 (labgrid: desk-7/alice); waited 2 s" in case["reason"]
        assert "Reservation" not in lab.client("reservations").stdout  # its reservation was cancelled
        assert lab.acquired_by("board-b") == "desk-7/alice"  # and alice's hold untouched
        # a place that frees up during the wait is taken: alice releases while melt waits
        profile = place_profile(workdir, lab, "lab-b", "board-b", wait_s=120)
        proc = spawn_melt("run", workdir / "recipe.yaml", "-d", profile, "--results", workdir / "r", "--run-id", "w2")
        _wait_for_reservation(lab)
    finally:
        lab.client("-p", "board-b", "release", user="alice", host="desk-7")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "waiting for place board-b, acquired by alice on desk-7" in out


def _wait_for_reservation(lab, timeout_s: float = 60) -> str:
    """Until some melt has a reservation waiting at the coordinator; returns labgrid's listing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = lab.client("reservations").stdout
        if "state: waiting" in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError("no reservation waited")


def _melt_ssh_masters() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "ssh" and any("melt-ssh-" in a for a in p.info["cmdline"] or [])}  # fmt: skip


def test_a_place_held_by_a_killed_melt_is_taken_over_on_the_same_host_only(workdir, lab):
    write_recipe(workdir, LONG_CASE, "long.yaml")
    write_recipe(workdir, ONE_CASE)
    profile = place_profile(workdir, lab, "lab-a", "board-a", wait_s=2)
    masters = _melt_ssh_masters()
    killed = spawn_melt("run", workdir / "long.yaml", "-d", profile, "--results", workdir / "r", "--run-id", "k")
    spawned = workdir / "device work lab-a" / "spawned"
    deadline = time.monotonic() + 120
    while not list(spawned.glob("k--*/pid")) and time.monotonic() < deadline:  # its agent runs on the board
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    holder = lab.acquired_by("board-a")
    assert holder is not None and f".melt{killed.pid}." in holder  # labgrid still has it acquired by the dead melt
    try:
        # a melt on another host cannot tell whether that melt still runs: it names it and waits
        elsewhere = dict(os.environ, LG_HOSTNAME="ci-runner-2")
        other = subprocess.run(
            [str(Path(sys.executable).with_name("melt")), "run", str(workdir / "recipe.yaml"), "-d", str(profile),
             "--results", str(workdir / "r"), "--run-id", "o"],
            capture_output=True, text=True, env=elsewhere, timeout=120,
        )  # fmt: skip
        assert other.returncode == 1, other.stdout + other.stderr
        reason = next(iter(json.loads((workdir / "r" / "o" / "run.json").read_text())["cases"].values()))["reason"]
        assert f"place board-a is acquired by melt (pid {killed.pid}) of " in reason and "waited 2 s" in reason
        assert lab.acquired_by("board-a") == holder
        # the next melt on the same host takes it over, and says so
        proc = run_melt("run", workdir / "recipe.yaml", "-d", profile, "--results", workdir / "r", "--run-id", "n")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        notes = json.loads((workdir / "r" / "n" / "run.json").read_text())["devices"]["lab-a"]["notes"]
        assert any(f"took over place board-a: it was acquired by melt (pid {killed.pid})" in n for n in notes), notes
        assert any("ended processes left running on the device by k" in n for n in notes), notes  # its agent
        assert lab.acquired_by("board-a") is None
    finally:
        for pid in _melt_ssh_masters() - masters:  # the killed melt's SSH connection could not close itself
            psutil.Process(pid).kill()


def test_ctrl_c_releases_the_place_and_ends_a_wait(workdir, lab):
    write_recipe(workdir, LONG_CASE)
    profile = place_profile(workdir, lab, "lab-a", "board-a")
    proc = spawn_melt("run", workdir / "recipe.yaml", "-d", profile, "--results", workdir / "r", "--run-id", "c")
    run_json = workdir / "r" / "c" / "run.json"
    wait_for_cases(run_json, lambda cases: any(c["status"] == "running" and "lab" in c for c in cases), 120)
    assert lab.acquired_by("board-a") is not None
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert lab.acquired_by("board-a") is None  # released by the time melt has exited
    assert "Reservation" not in lab.client("reservations").stdout
    # Ctrl-C during a wait for a held place: melt stops waiting and cancels its reservation
    lab.client("-p", "board-a", "acquire", user="alice", host="desk-7")
    try:
        profile = place_profile(workdir, lab, "lab-a", "board-a", wait_s=600)
        proc = spawn_melt("run", workdir / "recipe.yaml", "-d", profile, "--results", workdir / "r", "--run-id", "c2")
        _wait_for_reservation(lab)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)  # not the 600 s wait
        assert proc.returncode != 0
        assert "Reservation" not in lab.client("reservations").stdout
    finally:
        lab.client("-p", "board-a", "release", user="alice", host="desk-7")


def test_validate_refuses_a_place_or_a_selection_the_lab_does_not_have(workdir, lab):
    write_recipe(workdir, ONE_CASE)
    proc = run_melt("validate", workdir / "recipe.yaml", "-d", place_profile(workdir, lab, "lab-x", "board-x"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"transport.place: expected a place at labgrid coordinator {lab.address}: " in proc.stderr
    assert (
        "board-a (board=tiny, melt_profile=jetson-orin-nano, pool=nightly, slot=a), board-b (board=tiny, slot=b)"
        ", found 'board-x'" in proc.stderr
    )
    sweep = write_sweep(workdir, lab, "nowhere", "{board: huge}")
    proc = run_melt("validate", sweep)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{sweep}: lab.select: expected tags some place of labgrid coordinator {lab.address} carries" in proc.stderr
    assert "board-b (board=tiny, slot=b), found board=huge" in proc.stderr
    proc = run_melt("validate", write_sweep(workdir, lab, "fine", "{board: tiny}"))
    assert proc.returncode == 0 and "cases on board-a, board-b" in proc.stdout, proc.stdout + proc.stderr


def test_melt_lab_places_reserve_and_release(workdir, lab):
    env = dict(os.environ, LG_COORDINATOR=lab.address, LG_USERNAME="bob")
    melt = str(Path(sys.executable).with_name("melt"))

    def lab_cmd(*args):
        return subprocess.run([melt, "lab", *args], capture_output=True, text=True, env=env, timeout=60)

    done = lab_cmd("reserve", "board-a")
    assert done.returncode == 0 and "holding place board-a (reservation " in done.stdout, done.stdout + done.stderr
    assert lab.acquired_by("board-a").endswith("/bob")  # a person's hold, as labgrid-client's
    rows = {r["place"]: r for r in json.loads(lab_cmd("places", "--json").stdout)}
    assert rows["board-a"]["held"]["how"] == "acquired" and rows["board-a"]["held"]["who"].startswith("bob on ")
    assert rows["board-b"]["held"] is None and rows["board-b"]["tags"] == {"board": "tiny", "slot": "b"}
    assert "board-a" in lab_cmd("places").stdout
    refused = subprocess.run([melt, "lab", "release", "board-a"], capture_output=True, text=True,
                             env=dict(env, LG_USERNAME="carol"), timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "acquired by bob on " in refused.stderr and "--kick" in refused.stderr
    done = lab_cmd("release", "board-a")
    assert done.returncode == 0 and done.stdout.strip() == "released place board-a"
    assert lab.acquired_by("board-a") is None and "Reservation" not in lab.client("reservations").stdout
    # a probe holds the place, as a run does, and lets it go
    probe = run_melt("devices", "probe", place_profile(workdir, lab, "lab-a", "board-a"), "--json")
    assert probe.returncode == 0 and json.loads(probe.stdout)["device"] == "lab-a", probe.stdout + probe.stderr
    assert lab.acquired_by("board-a") is None


def test_the_nightly_workflow_takes_its_devices_from_the_lab_when_configured(lab, monkeypatch):
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["sweep"]
    assert job["env"]["LG_COORDINATOR"] == "${{ vars.LG_COORDINATOR }}"
    assert "'recipes/lab/nightly-sweep.yaml'" in job["env"]["SWEEP"]
    monkeypatch.setenv("LG_COORDINATOR", lab.address)  # the coordinator as labgrid's own tools read it
    plan = plan_sweep(ROOT / "recipes" / "lab" / "nightly-sweep.yaml")
    (profile,) = plan.profiles  # the lab's nightly pool: board-a, with the facts its melt_profile tag names
    assert profile.name == "board-a" and profile.spec.platform == "jetson"
    assert profile.spec.transport.kind == "labgrid" and profile.spec.transport.place == "board-a"
    assert profile.spec.transport.user == "melt"  # the SSH options of jetson-orin-nano
    assert {c.device for c in plan.cases} == {"board-a"} and all(c.protocol["repetitions"] >= 10 for c in plan.cases)
    close_all()  # this process's session to the lab, before the lab stops


def test_a_phone_place_is_reached_through_its_exporter_host_s_adb_server(lab, adb_server, tmp_path, models,
                                                                         llama_bench_bin):  # fmt: skip
    """A phone as a place: its exporter exports the adb server of the host the phone hangs off (a
    NetworkService at that server's address and port) and melt reaches the phone through it with `adb -H -P -s`
    (labgrid 26 has no ADB resource). The stand-in phone (tests/lab/adbd.py) runs real llama-bench."""
    from test_adb import BIN, start_phone, stop_phone

    phone = start_phone(tmp_path, adb_server)
    try:
        lab.export("phone-1", f"NetworkService:\n  address: 127.0.0.1\n  username: adb\n  port: {adb_server.port}",
                   {"board": "pixel-8"})  # fmt: skip
        bench = phone.path(BIN) / "llama-bench"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.symlink_to(llama_bench_bin)
        (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
        profile = tmp_path / "phone-place.yaml"
        profile.write_text(
            f"name: lab-pixel\nplatform: android\nllama_cpp_bin: {BIN}\n"
            f"transport: {{kind: labgrid, place: phone-1, coordinator: '{lab.address}', adb_serial: '{phone.serial}', "
            "wait_s: 60}\n"
            f"sensors: {{root: {ROOT / 'tests' / 'lab' / 'boards' / 'android-phone'}, battery: {{current_unit: uA}}}}\n"
        )
        recipe = write_recipe(
            tmp_path,
            "name: phone\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
            "    workload: {prompt_tokens: [16], n_gen: 4}\n    params: {threads: 1}\n"
            "protocol: {warmup: 0, repetitions: 2}\ntelemetry: {interval_ms: 100, idle_s: 0.2}\n",
        )
        # the melt process finds no adb server of its own: only the place's, through -H/-P
        env_port = os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        try:
            proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "p")
        finally:
            if env_port is not None:
                os.environ["ANDROID_ADB_SERVER_PORT"] = env_port
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run = json.loads((tmp_path / "r" / "p" / "run.json").read_text())
        (entry,) = run["cases"].values()
        assert entry["status"] == "ok" and entry["lab"]["place"] == "phone-1", entry
        case_dir = next((tmp_path / "r" / "p" / "cases").iterdir())
        assert json.loads((case_dir / "metrics.json").read_text())["summary"]["decode_tok_s"] > 0
        assert phone.path("/data/local/tmp/melt").is_dir()  # a phone's workdir, as for an adb profile
        assert lab.acquired_by("phone-1") is None  # released
    finally:
        stop_phone(phone, adb_server)
