"""Batteries end to end on generated sysfs trees (tests/battery_trees.py) with transport local:
`melt devices probe --json` says which supply, units and sign rule were used and why, and `melt run`
writes the right trace columns, power_method and power figures. The probe itself keeps one unit
while the readings cross magnitude boundaries between samples."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from battery_trees import DEVICES, write_profile, write_tree
from conftest import read_trace, run_melt, run_static_case

from melt.telemetry.battery import AndroidBatteryProbe


def device_profile(tmp_path: Path, name: str) -> Path:
    root = write_tree(tmp_path / "root", DEVICES[name])
    return write_profile(tmp_path, name, root, DEVICES[name])


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_probe_says_what_was_decided_and_why(tmp_path, name):
    device = DEVICES[name]
    proc = run_melt("devices", "probe", device_profile(tmp_path, name), "--json")
    assert proc.returncode == 0, proc.stderr
    sensors = json.loads(proc.stdout)["sensors"]
    assert sensors["power_method"] == "battery" and sensors["power_total"] == "power.total_w"
    battery = sensors["probes"]["android_battery"]
    assert {"battery.power_w", "battery.voltage_v", "power.total_w"} <= set(battery["channels"])
    assert ("battery.current_a" in battery["channels"]) is (device.current_a is not None)
    notes = "\n".join(battery["notes"])
    for text in device.notes:
        assert text in notes, (text, notes)
    assert "readings looked at (1)" in notes  # the evidence is kept with the decision


@pytest.mark.parametrize("name", ["phone-few-ma", "laptop-3s", "laptop-power-now", "handheld-4s-ma-pinned"])
def test_run_reads_the_battery_right(tmp_path, models, name):
    device = DEVICES[name]
    case_dir = run_static_case(tmp_path, models, device_profile(tmp_path, name), idle_s=0.5)
    run_dir = case_dir.parents[1]
    trace = read_trace(case_dir)
    assert len(trace["t_s"]) >= 10
    expected = {
        "battery.voltage_v": device.voltage_v,
        "battery.power_w": device.power_w,
        "power.total_w": device.power_w,
    }
    if device.current_a is not None:
        expected["battery.current_a"] = device.current_a
    else:
        assert "battery.current_a" not in trace  # not measured: no column, not a derived one
    for channel, value in expected.items():
        values = trace[channel]  # every sample, in one unit
        assert len(values) == len(trace["t_s"]) and values == pytest.approx([value] * len(values), rel=1e-5), channel
    assert set(trace["battery.charging"]) == {0.0}

    metrics = json.loads((case_dir / "metrics.json").read_text())
    s, tele = metrics["summary"], metrics["telemetry"]
    assert s["power_method"] == "battery"
    assert tele["idle_baseline_w"] == pytest.approx(device.power_w, rel=1e-4)
    assert tele["raw"]["power_avg_w"] == pytest.approx(device.power_w, rel=1e-4)
    window = tele["counted_window"]
    assert window["raw_j"] == pytest.approx(device.power_w * window["duration_s"], rel=0.01)
    with (run_dir / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["power_method"] == "battery"
    sensors = json.loads((case_dir / "sensors.json").read_text())
    assert any(n.startswith("battery supply ") for n in sensors["probes"]["android_battery"]["notes"])


# --- the probe across samples: decided once in detect(), never per sample ----------------------------


@pytest.mark.parametrize(
    ("pins", "raws", "scale"),
    [
        ({}, [-9999, -10001, -9500, -10500, -4306, -1202147], 1e-6),  # the ABI's uA throughout
        ({"current_unit": "mA"}, [-9999, -10001, -999, -1001], 1e-3),  # mA pinned throughout
    ],
)
def test_probe_keeps_one_unit_while_readings_cross_boundaries(tmp_path, pins, raws, scale):
    root = write_tree(tmp_path, DEVICES["phone-few-ma"])
    current = root / "sys" / "class" / "power_supply" / "battery" / "current_now"
    probe = AndroidBatteryProbe(str(root), {"battery": pins})
    probe.detect()
    got = []
    for raw in raws:
        current.write_text(f"{raw}\n")
        got.append(probe.sample()["battery.current_a"])
    assert got == pytest.approx([-r * scale for r in raws], rel=1e-12)


def test_probe_follows_status_per_sample_with_the_device_sign_rule(tmp_path):
    """Discharging, then the charger goes in (Charging), then 'Not charging' with the input suspended
    and the battery discharging: power counts in the first and last only."""
    root = write_tree(tmp_path, DEVICES["phone-few-ma"])
    folder = root / "sys" / "class" / "power_supply" / "battery"
    probe = AndroidBatteryProbe(str(root), {})
    det = probe.detect()
    assert "discharge sign negative (evidence)" in "\n".join(det.notes)
    out = []
    for status, current in [("Discharging", "-800000"), ("Charging", "1500000"), ("Not charging", "-700000")]:
        (folder / "status").write_text(status + "\n")
        (folder / "current_now").write_text(current + "\n")
        out.append(probe.sample())
    assert out[0]["power.total_w"] == pytest.approx(0.8 * 3.87) and out[0]["battery.charging"] == 0.0
    assert "power.total_w" not in out[1] and out[1]["battery.charging"] == 1.0
    assert out[1]["battery.current_a"] == pytest.approx(-1.5)
    assert out[2]["power.total_w"] == pytest.approx(0.7 * 3.87)


def test_probe_without_a_battery_says_so(tmp_path):
    (tmp_path / "sys" / "class" / "power_supply" / "AC").mkdir(parents=True)
    det = AndroidBatteryProbe(str(tmp_path), {}).detect()
    assert det.channels == [] and det.power_total is None
    assert det.missing == [f"{tmp_path}/sys/class/power_supply: no supply of type Battery"]
    write_tree(tmp_path, DEVICES["phone-ma-mv"])  # a supply named battery; the profile pins bms
    det = AndroidBatteryProbe(str(tmp_path), {"battery": {"supply": "bms"}}).detect()
    assert det.power_total is None and det.channels == []
    assert "bms: pinned by sensors.battery.supply" in det.missing[0] and "(type Battery: battery)" in det.missing[0]
