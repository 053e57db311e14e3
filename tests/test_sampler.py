"""The sampler process: a fixed grid on the monotonic clock, late and missed samples visible,
never resampled; and the thermal gate before a case."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_melt, write_recipe

SLOW_SAMPLER = textwrap.dedent(
    """
    import sys, time
    from melt.telemetry import sampler
    from melt.telemetry.base import Detection, Probe

    class Slow(Probe):
        name = "slow"
        n = 0
        def detect(self):
            return Detection(self.name, channels=["test.n_count"])
        def sample(self):
            self.n += 1
            if self.n % 5 == 0:
                time.sleep(0.23)  # a read that takes four and a half intervals
            return {"test.n_count": float(self.n)}

    sampler.make_probes = lambda root, sensors, pid: [Slow(root, sensors, pid)]
    sampler.run(sys.argv[1], 50)
    """
)


def test_missed_samples_are_counted_not_filled(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAMPLER, str(tmp_path)], cwd=ROOT)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    with (tmp_path / "trace.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["test.n_count"]) for r in rows] == list(range(1, len(rows) + 1))  # one row per real read
    # the last row is the closing sample taken when told to stop: off the grid, so no lag
    assert rows[-1]["sampler.lag_ms"] == "" and all(r["sampler.lag_ms"] != "" for r in rows[:-1])
    rows = rows[:-1]
    t = [float(r["t_s"]) for r in rows]
    missed = [int(r["sampler.missed"]) for r in rows]
    # a read 0.23 s long at 50 ms: three ticks skipped and counted, the fourth taken late with its lag
    assert sum(missed) >= 3 * (len(rows) // 5 - 1) and set(missed) <= {0, 3}
    late = [float(r["sampler.lag_ms"]) for r, m in zip(rows, missed) if m]
    assert all(20 < lag < 50 for lag in late)
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert max(gaps) > 0.2  # the gap shows in the timestamps; nothing was filled in
    assert all(float(r["sampler.lag_ms"]) >= 0 for r in rows)  # never stamped before its tick
    assert json.loads((tmp_path / "sensors.json").read_text())["channels"] == ["test.n_count", "sampler.cpu_s"]


def hot_board(tmp_path: Path, celsius: float) -> Path:
    zone = tmp_path / "board" / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("soc-thermal\n")
    (zone / "temp").write_text(f"{int(celsius * 1000)}\n")
    profile = tmp_path / "hot.yaml"
    profile.write_text(f"name: hot\ntransport: {{kind: local}}\nsensors: {{root: {tmp_path / 'board'}}}\n")
    return profile


@pytest.mark.parametrize("max_temp_c, timed_out", [(70.0, True), (90.0, False)])
def test_thermal_gate(tmp_path, models, max_temp_c, timed_out):
    profile = hot_board(tmp_path, 80.0)
    (tmp_path / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(
        tmp_path,
        f"""
        name: gate
        models:
          - id: static
            runtime: onnxruntime
            source: {{path: static.onnx}}
        protocol: {{warmup: 0, repetitions: 3, min_duration_s: 0}}
        telemetry: {{interval_ms: 50, idle_s: 0.2}}
        gate: {{max_temp_c: {max_temp_c}, timeout_s: 1.5}}
        """,
    )
    started = time.monotonic()
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "g")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "g" / "cases").iterdir()
    agent = json.loads((case_dir / "agent.json").read_text())
    metrics = json.loads((case_dir / "metrics.json").read_text())
    assert agent["gate"]["start_temp_c"] == 80.0 and agent["gate"]["timed_out"] is timed_out
    assert metrics["summary"]["temp_max_c"] == 80.0
    if timed_out:
        assert time.monotonic() - started > 1.5
        assert metrics["validity"]["verdict"] == "semivalid"
        assert any("thermal gate timed out" in r for r in metrics["validity"]["reasons"])
    else:
        assert agent["gate"]["waited_s"] < 1.0
