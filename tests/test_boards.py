"""The recorded boards (tests/lab/boards, written by make_boards.py) as sensor roots with transport
local: `melt devices probe` finds the right channels, and a full `melt run` gives a trace with the
expected values, energy that integrates the recorded power, temperatures and throttle flags."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from conftest import read_trace, run_melt, run_static_case, write_recipe

BOARDS = Path(__file__).resolve().parent / "lab" / "boards"

PROFILES = {
    "jetson-orin-nano": "platform: jetson\nsensors: {{root: {root}, tegrastats: /usr/bin/tegrastats}}\n",
    "raspberry-pi-5": "platform: raspberrypi\nsensors: {{root: {root}, vcgencmd: /usr/bin/vcgencmd}}\n",
    "android-phone": "platform: android\nsensors: {{root: {root}, battery: {{current_unit: uA}}}}\n",
}
# board -> (power method, W of power.total_w, hottest zone C, throttled, channels that must be there)
EXPECTED = {
    "jetson-orin-nano": (
        "ina3221", 5.072 * 1.824, 65.562, False,
        {"power.vdd_in_w": 5.072 * 1.824, "power.vdd_soc_w": 5.064 * 0.672, "gpu.util_pct": 37.2,
         "gpu.freq_mhz": 624.75, "temp.cpu_thermal_c": 48.5, "cpu4.max_freq_mhz": 1510.4, "emc.util_pct": 18.0},
    ),
    "raspberry-pi-5": (
        "pmic", 5.9216, 48.3, True,
        {"temp.soc_c": 48.3, "temp.cpu_thermal_c": 48.3, "power.vdd_core_w": 5.03652 * 0.8936988,
         "throttle.pi_now": 1.0, "cpu0.freq_mhz": 2400.0},
    ),
    "android-phone": (
        "battery", 1.202147 * 4.13744, 41.2, False,
        {"battery.current_a": 1.202147, "battery.voltage_v": 4.13744, "battery.temp_c": 36.0,
         "battery.charging": 0.0, "temp.battery_c": 36.0, "cpu4.freq_mhz": 1171.2},
    ),
}  # fmt: skip


def profile(tmp_path: Path, board: str) -> Path:
    path = tmp_path / f"{board}.yaml"
    body = PROFILES[board].format(root=BOARDS / board)
    path.write_text(f"name: lab-{board}\ntransport: {{kind: local}}\n{body}")
    return path


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_probe_finds_the_board_sensors(tmp_path, board):
    method, total_w, _, _, channels = EXPECTED[board]
    proc = run_melt("devices", "probe", profile(tmp_path, board), "--json")
    assert proc.returncode == 0, proc.stderr
    sensors = json.loads(proc.stdout)["sensors"]
    assert sensors["power_method"] == method and sensors["power_total"] == "power.total_w"
    assert set(channels) <= set(sensors["channels"])
    assert not any(c.startswith("temp.") and "cv0_thermal" in c for c in sensors["channels"])  # offline zone dropped
    text = run_melt("devices", "probe", profile(tmp_path, board))
    assert f"power method {method}" in text.stdout and "not found:" in text.stdout


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_run_on_a_recorded_board(tmp_path, models, board):
    method, total_w, temp_max, throttled, channels = EXPECTED[board]
    device = profile(tmp_path, board)
    case_dir = run_static_case(tmp_path, models, device, repetitions=5, min_duration_s=1.0, idle_s=0.5)
    run_dir = case_dir.parents[1]
    trace = read_trace(case_dir)
    assert len(trace["t_s"]) >= 20 and trace["t_s"] == sorted(trace["t_s"])
    for channel, value in channels.items():
        assert trace[channel] and statistics.median(trace[channel]) == pytest.approx(value, rel=1e-3), channel
    assert statistics.median(trace["power.total_w"]) == pytest.approx(total_w, rel=1e-3)

    metrics = json.loads((case_dir / "metrics.json").read_text())
    s, tele = metrics["summary"], metrics["telemetry"]
    assert s["power_method"] == method
    assert s["temp_max_c"] == pytest.approx(temp_max)
    assert s["throttled"] is throttled
    assert tele["idle_baseline_w"] == pytest.approx(total_w, rel=1e-3)
    window = tele["counted_window"]
    # constant recorded power: the integral is power x time, and nothing is left over the idle baseline
    assert window["raw_j"] == pytest.approx(total_w * window["duration_s"], rel=0.01)
    assert abs(window["net_j"]) < 0.01 * window["raw_j"]
    assert s["energy_j"] == pytest.approx(window["net_j"] / s["n_trials"])
    assert s["energy_decode_j"] is None and "not applicable" in metrics["missing"]["energy_decode_j"]
    with (run_dir / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["power_method"] == method and row["throttled"] == str(throttled).lower()
    assert float(row["temp_max_c"]) == pytest.approx(temp_max)


def test_short_windows_are_empty_with_the_reason(tmp_path, models):
    """A request shorter than two sampling intervals gets no energy figure: never interpolated."""
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(
        tmp_path,
        """
        name: short
        models:
          - id: tiny
            runtime: llama_cpp
            source: {path: tiny.gguf}
            workload: {prompt_tokens: 8, n_gen: 4}
            params: {threads: 1, n_ctx: 128}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0}
        telemetry: {interval_ms: 250, idle_s: 0.6}
        """,
    )
    proc = run_melt(
        "run", recipe, "-d", profile(tmp_path, "jetson-orin-nano"), "--results", tmp_path / "r", "--run-id", "s"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "s" / "cases").iterdir()
    metrics = json.loads((case_dir / "metrics.json").read_text())
    for column in ("energy_j", "energy_prefill_j", "energy_decode_j", "j_per_token", "power_avg_w"):
        assert metrics["summary"][column] is None
        assert "need 2" in metrics["missing"][column], metrics["missing"][column]
    assert metrics["summary"]["power_method"] == "ina3221"
