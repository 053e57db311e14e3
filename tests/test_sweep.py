"""`melt sweep`: recipes over a pool of devices, one worker per device, devices in parallel and
never two cases at once on one device; a device that dies mid-sweep fails only its own cases,
and --resume finishes them; Ctrl-C stops every agent and --resume finishes the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, run_melt, spawn_melt, wait_for_cases, write_recipe
from test_run_local import CHECK_RESULTS, _agents, read_csv

from melt.progress import SweepProgress

ONNX_RECIPE = """
name: vision
models:
  - id: static
    runtime: onnxruntime
    source: {path: tiny_static.onnx}
    params: {intra_op_threads: [1, 2]}
protocol: {warmup: 0, repetitions: 3, min_duration_s: 0.6}
telemetry: {interval_ms: 50, idle_s: 0.2}
"""
LLM_RECIPE = """
name: llm
models:
  - id: tiny-llm
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 8}
    params: {threads: 1, n_ctx: 128}
protocol: {warmup: 1, repetitions: 10, min_duration_s: 0.3}
telemetry: {interval_ms: 50, idle_s: 0.2}
"""


def local_profile(folder: Path, name: str, python: str | None = None) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nplatform: linux\ntransport: {{kind: local}}\n" + (f"python: {python}\n" if python else "")
    )
    return path


def write_sweep(folder: Path, body: str) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@pytest.fixture
def pool(workdir):
    write_recipe(workdir, ONNX_RECIPE, "vision.yaml")
    write_recipe(workdir, LLM_RECIPE, "llm.yaml")
    local_profile(workdir, "bench-a")
    local_profile(workdir, "bench-b")
    return workdir


def _windows(run_dir: Path) -> dict[str, list[tuple[int, int]]]:
    """Per device: each case's span on the (shared, local) monotonic clock: idle baseline to last trial."""
    run = json.loads((run_dir / "run.json").read_text())
    spans: dict[str, list[tuple[int, int]]] = {}
    for case_id, entry in run["cases"].items():
        phases = json.loads((run_dir / "cases" / case_id / "agent.json").read_text())["phases"]
        spans.setdefault(entry["device"], []).append((phases["idle"][0], phases["trials"][1]))
    return spans


def test_sweep_runs_devices_in_parallel_one_case_at_a_time(pool):
    sweep = write_sweep(
        pool,
        """
        name: nightly
        devices:
          - {profile: bench-a.yaml, tags: [small]}
          - {profile: bench-b.yaml, tags: [small, llm]}
        recipes:
          - vision.yaml
          - {recipe: llm.yaml, tags: [llm]}
        """,
    )
    proc = run_melt("sweep", sweep, "--results", pool / "results", "--run-id", "s1", cwd=pool)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = pool / "results" / "s1"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "complete" and run["sweep"]["name"] == "nightly"
    assert set(run["recipes"]) == {"vision", "llm"} and set(run["devices"]) == {"bench-a", "bench-b"}
    by_device = {}
    for entry in run["cases"].values():
        by_device.setdefault(entry["device"], []).append(entry["model"])
    assert sorted(by_device["bench-a"]) == ["static", "static"]  # llm only on the tagged device
    assert sorted(by_device["bench-b"]) == ["static", "static", "tiny-llm"]
    spans = _windows(run_dir)
    for device, windows in spans.items():  # one case at a time on a device
        windows.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(windows, windows[1:])), device
    overlap = any(a0 < b1 and b0 < a1 for a0, a1 in spans["bench-a"] for b0, b1 in spans["bench-b"])
    assert overlap, "the two devices ran one after the other, not in parallel"
    # a sweep's case has the case_id a plain run of its recipe on that device gives
    plain = run_melt("validate", pool / "vision.yaml", "-d", pool / "bench-a.yaml", cwd=pool)
    plain_ids = {line.split()[0] for line in plain.stdout.splitlines()[1:]}
    assert plain_ids <= set(run["cases"])
    lines = proc.stdout.splitlines()
    assert any(line.startswith("bench-a [1/2] static") and ": ok: " in line for line in lines), proc.stdout
    assert proc.stdout.rstrip().splitlines()[-2:] == [f"results: {run_dir}", f"report: {run_dir / 'report.html'}"]
    assert (run_dir / "report.html").stat().st_size > 100_000  # plotly.js embedded: opens offline
    check = subprocess.run([sys.executable, CHECK_RESULTS, run_dir], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert len(read_csv(run_dir / "summary.csv")) == 5


FLAKY_PYTHON = """#!/bin/sh
# A device that dies: once its power file is gone, nothing starts on it.
[ -e "{power}" ] || {{ echo "device {name} is down" >&2; exit 1; }}
exec "{python}" "$@"
"""


def test_device_failing_mid_sweep_fails_its_cases_only_then_resume(pool):
    power = pool / "power-on"
    power.touch()
    flaky = pool / "flaky-python"
    flaky.write_text(FLAKY_PYTHON.format(power=power, name="bench-b", python=sys.executable))
    flaky.chmod(0o755)
    local_profile(pool, "bench-b", python=str(flaky))
    write_recipe(
        pool,
        """
        name: many
        models:
          - id: static
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
            params: {intra_op_threads: [1, 2, 3]}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0.8}
        telemetry: {interval_ms: 50, idle_s: 0.2}
        """,
        "many.yaml",
    )
    sweep = write_sweep(pool, "name: flaky\ndevices: [bench-a.yaml, bench-b.yaml]\nrecipes: [many.yaml]\n")
    results = pool / "results"
    proc = spawn_melt("sweep", sweep, "--results", results, "--run-id", "f")
    run_json = results / "f" / "run.json"
    # pull the plug once bench-b has finished one case
    wait_for_cases(run_json, lambda cases: any(c["device"] == "bench-b" and c["status"] == "ok" for c in cases), 90)
    power.unlink()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    run = json.loads(run_json.read_text())
    assert run["status"] == "partial"
    a = [c for c in run["cases"].values() if c["device"] == "bench-a"]
    b = [c for c in run["cases"].values() if c["device"] == "bench-b"]
    assert [c["status"] for c in a] == ["ok"] * 3  # the other device is untouched
    assert [c["status"] for c in b].count("ok") >= 1 and [c["status"] for c in b].count("failed") >= 1
    assert all("bench-b is down" in c["reason"] for c in b if c["status"] == "failed")
    assert "--resume" in err
    kept = {cid: (results / "f" / "cases" / cid / "trials.jsonl").stat().st_mtime_ns
            for cid, c in run["cases"].items() if c["status"] == "ok"}  # fmt: skip

    power.touch()
    again = run_melt("sweep", sweep, "--results", results, "--run-id", "f", "--resume", cwd=pool)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(kept)} cases already done, kept" in again.stdout
    run = json.loads(run_json.read_text())
    assert run["status"] == "complete" and all(c["status"] == "ok" for c in run["cases"].values())
    assert kept == {cid: (results / "f" / "cases" / cid / "trials.jsonl").stat().st_mtime_ns for cid in kept}


def test_interrupted_sweep_stops_every_agent_and_resumes(pool):
    sweep = write_sweep(pool, "name: stop\ndevices: [bench-a.yaml, bench-b.yaml]\nrecipes: [vision.yaml, llm.yaml]\n")
    results = pool / "results"
    proc = spawn_melt("sweep", sweep, "--results", results, "--run-id", "i")
    run_json = results / "i" / "run.json"

    def both_devices_busy(cases: list[dict]) -> bool:
        statuses = [c["status"] for c in cases]
        return "ok" in statuses and statuses.count("running") == 2

    wait_for_cases(run_json, both_devices_busy, 60)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    run = json.loads(run_json.read_text())
    assert run["status"] == "interrupted"
    assert not any(c["status"] in ("running", "pending") and c.get("reason") != "interrupted"
                   for c in run["cases"].values() if c["status"] == "running")  # fmt: skip
    assert sum(c.get("reason") == "interrupted" for c in run["cases"].values()) >= 1
    assert not any(p.cmdline()[-1].endswith(tuple(run["cases"])) for p in _agents()), "an agent outlived melt"
    done = [cid for cid, c in run["cases"].items() if c["status"] == "ok"]

    again = run_melt("sweep", sweep, "--results", results, "--run-id", "i", "--resume", cwd=pool)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(done)} cases already done, kept" in again.stdout
    assert json.loads(run_json.read_text())["status"] == "complete"


def test_bad_sweep_is_refused_with_file_and_key_and_writes_nothing(pool, cli):
    sweep = write_sweep(
        pool,
        """
        name: bad
        devices: [bench-a.yaml]
        recipes: [vision.yaml, {recipe: llm.yaml, tags: small}]
        """,
    )
    code, out = cli("sweep", sweep, "--results", pool / "results")
    assert code == 2 and f"{sweep}:3: recipes[1].tags: expected a list" in out  # a tag list, not a string
    write_recipe(pool, LLM_RECIPE.replace("n_gen: 8", "n_gen: eight"), "broken.yaml")
    sweep = write_sweep(pool, "name: bad\ndevices: [bench-a.yaml, {profile: nowhere.yaml}]\nrecipes: [broken.yaml]\n")
    code, out = cli("sweep", sweep, "--results", pool / "results")
    assert code == 2
    assert f"{sweep}: devices[1]" in out and "nowhere.yaml" in out  # every problem at once
    assert "broken.yaml" in out and "n_gen" in out
    assert not (pool / "results").exists()
    sweep = write_sweep(pool, "name: tags\ndevices: [{profile: bench-a.yaml, tags: [x]}]\nrecipes: [vision.yaml]\n")
    code, out = cli("sweep", sweep, "--tag", "gpu", "--results", pool / "results")
    assert code == 2 and "--tag" in out and "gpu" in out
    sweep = write_sweep(pool, "name: twice\ndevices: [bench-a.yaml]\nrecipes: [vision.yaml, vision.yaml]\n")
    code, out = cli("sweep", sweep, "--results", pool / "results")
    assert code == 2 and "recipes[1]" in out and "distinct names" in out
    assert not (pool / "results").exists()


class _Case:
    def __init__(self, device, label):
        self.device, self.label = device, label


def test_live_view_shows_each_device():
    from rich.console import Console

    console = Console(record=True, width=120, force_terminal=True)
    view = SweepProgress(console=console, live=False)
    view("run_start", run_id="s", run_dir=Path("r"), devices={"jetson": [1, 2], "pi": [1]})
    view("case_start", case=_Case("jetson", "gemma t=2"), index=1, total=2)
    view("case_end", case=_Case("pi", "vad"), index=1, total=1, status="failed", reason="link lost", metrics=None)
    console.print(view.table())
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert "gemma t=2" in rows["jetson"] and "0/2" in rows["jetson"]
    assert "1/1" in rows["pi"] and "done" in rows["pi"]
    assert "pi [1/1] vad: FAILED: link lost" in text


def test_sweep_help_runs_from_a_fresh_shell():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "sweep", "--help"], capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode == 0 and "--resume" in proc.stdout and "--tag" in proc.stdout


def test_a_report_that_cannot_be_written_loses_nothing(pool, cli, monkeypatch):
    def broken(run_dirs, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("melt.report.html.write_report", broken)
    sweep = write_sweep(pool, "name: one\ndevices: [bench-a.yaml]\nrecipes: [vision.yaml]\n")
    code, out = cli("sweep", sweep, "--results", pool / "results", "--run-id", "x", "--no-live")
    assert code == 0, out
    assert "report: not written: OSError: disk full; retry with: melt report" in out
    assert json.loads((pool / "results" / "x" / "run.json").read_text())["status"] == "complete"


def test_case_option_runs_only_those_cases(pool, cli):
    sweep = write_sweep(pool, "name: pick\ndevices: [bench-a.yaml, bench-b.yaml]\nrecipes: [vision.yaml]\n")
    code, out = cli("validate", sweep)
    assert code == 0 and "4 cases on bench-a, bench-b" in out, out
    picked = out.splitlines()[3].split()[0]  # a bench-b case: the confirming run of a flagged case
    code, out = cli("sweep", sweep, "--case", picked, "--results", pool / "results", "--run-id", "c", "--no-live")
    assert code == 0, out
    run = json.loads((pool / "results" / "c" / "run.json").read_text())
    assert list(run["cases"]) == [picked] and run["cases"][picked]["device"] == "bench-b"
    code, out = cli("sweep", sweep, "--case", "000000000000", "--results", pool / "results", "--run-id", "d")
    assert code == 2 and "--case" in out and "000000000000" in out
    assert not (pool / "results" / "d").exists()
