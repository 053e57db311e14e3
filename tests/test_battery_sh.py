"""The phone path: sampler.sh (under real shells) on the generated battery trees, then the host-side
conversion (sh_trace.convert): one supply chosen, units and sign decided once over the whole window,
every row read with them, and the decision with its evidence in the sensors dict."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from battery_trees import DEVICES, write_tree
from conftest import ROOT

from melt.telemetry.sh_trace import convert

SCRIPT = ROOT / "melt" / "telemetry" / "sampler.sh"
SHELLS = {"dash": ["dash"], "busybox": ["busybox", "sh"], "mksh": ["mksh"]}


def shell(name: str) -> list[str]:
    # the lab installs all three (scripts/lab_packages.sh): a missing one fails, never skips
    assert shutil.which(SHELLS[name][0]), f"{name} is not installed (scripts/lab_packages.sh installs it)"
    return SHELLS[name]


def start(sh: list[str], out: Path, root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*sh, str(SCRIPT), str(out), "50", str(root)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.stderr.read()


def converted(out: Path, pins: dict | None) -> tuple[dict, list[dict], list[dict]]:
    """(sensors dict, raw rows, trace rows) of a finished sampler run in out."""
    sensors = convert(out / "trace.raw.csv", out / "sampler.json", out / "trace.csv", pins)
    with (out / "trace.raw.csv").open(newline="") as f:
        raw = list(csv.DictReader(f))
    with (out / "trace.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return sensors, raw, rows


CASES = [(name, "dash") for name in sorted(DEVICES)] + [
    (name, sh) for sh in ("busybox", "mksh") for name in ("phone-two-supplies", "laptop-power-now", "phone-few-ma")
]


@pytest.mark.parametrize(("name", "sh"), CASES)
def test_sh_path_reads_each_device_right(tmp_path, name, sh):
    device = DEVICES[name]
    root = write_tree(tmp_path / "root", device)
    proc = start(shell(sh), tmp_path / "out", root)
    time.sleep(0.5)
    assert stop(proc) == ""
    meta = json.loads((tmp_path / "out" / "sampler.json").read_text())
    assert not any("stylus" in p for p in meta["batteries"].values())  # scope Device: a peripheral's battery
    sensors, raw, rows = converted(tmp_path / "out", device.pins)
    assert len(rows) >= 3
    assert sensors["power_method"] == "battery" and sensors["power_total"] == "power.total_w"
    probe = sensors["probes"]["sh_sampler"]
    notes = "\n".join(probe["notes"])
    for text in device.notes:
        if "(driver)" in text:  # the sh sampler does not look at the ACPI device: the sign is the window's
            assert "discharge sign positive (evidence)" in notes
        else:
            assert text in notes, (text, notes)
    assert f"rows: {len(rows)} discharging" in notes
    expected = {
        "battery.voltage_v": device.voltage_v,
        "battery.power_w": device.power_w,
        "power.total_w": device.power_w,
    }
    if device.current_a is None:
        assert "battery.current_a" not in rows[0]
    else:
        expected["battery.current_a"] = device.current_a
    for channel, value in expected.items():
        values = [float(r[channel]) for r in rows]
        assert values == pytest.approx([value] * len(values), rel=1e-5), channel
    assert probe["battery"].endswith(f"/{device.pins.get('supply') or next(iter(_system(device)))}")


def _system(device) -> list[str]:
    """The device's Battery supplies of the system, by name (what the sampler records)."""
    return sorted(n for n, f in device.supplies.items() if f.get("type") == "Battery" and f.get("scope") != "Device")


def put(path: Path, text: str) -> None:
    """Replace a sysfs file at once, as the kernel does: a reader never sees it half written."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


@pytest.mark.parametrize("sh", ["dash", "mksh"])
def test_sh_window_crossing_boundaries_and_statuses_keeps_one_unit(tmp_path, sh):
    """The phone's readings change while the sampler runs: across 10000 and 1000 raw, then the charger
    goes in, then 'Not charging' while the battery discharges. One unit (the ABI's uA) and one sign
    rule (negative, from the Discharging rows) for the whole window; direction per row."""
    root = write_tree(tmp_path / "root", DEVICES["phone-few-ma"])
    folder = root / "sys" / "class" / "power_supply" / "battery"
    steps = [("Discharging", -9500), ("Discharging", -10500), ("Discharging", -999), ("Discharging", -1001),
             ("Charging", 1500000), ("Not charging", -700000)]  # fmt: skip
    put(folder / "current_now", str(steps[0][1]))
    proc = start(shell(sh), tmp_path / "out", root)
    for status, current in steps:
        put(folder / "status", status)
        put(folder / "current_now", str(current))
        time.sleep(0.3)
    assert stop(proc) == ""
    sensors, raw, rows = converted(tmp_path / "out", None)
    seen = {(r["battery0.status"], int(r["battery0.current_raw"])) for r in raw}
    assert set(steps) <= seen  # every step was sampled
    for r, row in zip(raw, rows):
        current, status = int(r["battery0.current_raw"]), r["battery0.status"]
        assert float(row["battery.current_a"]) == pytest.approx(-current * 1e-6, rel=1e-5)
        discharging = current < 0  # the sign rule the Discharging rows show: negative is discharge
        if status == "Charging" or not discharging:
            assert row["power.total_w"] == ""
        else:
            assert float(row["power.total_w"]) == pytest.approx(-current * 1e-6 * 3.87, rel=1e-5)
    notes = "\n".join(sensors["probes"]["sh_sampler"]["notes"])
    assert "current_now unit uA (kernel ABI)" in notes and "discharge sign negative (evidence)" in notes
    assert "direction discharging from the sign under rule negative" in notes  # the Not charging rows


def write_raw(folder: Path, header: list[str], rows: list[list], meta: dict) -> None:
    (folder / "sampler.json").write_text(json.dumps({"clock": "monotonic", "interval_ms": 100, **meta}))
    lines = [",".join(header)] + [
        ",".join(map(str, [1_000_000_000 + i * 100_000_000, *row])) for i, row in enumerate(rows)
    ]
    (folder / "trace.raw.csv").write_text("\n".join(lines) + "\n")


B = ["battery0.current_raw", "battery0.voltage_raw", "battery0.power_raw", "battery0.temp_raw", "battery0.status"]


@pytest.mark.parametrize("cells", [1, 2, 3, 4])
@pytest.mark.parametrize("unit", ["uV", "mV"])
def test_convert_packs_and_window_units(tmp_path, cells, unit):
    """1S..4S packs in uV (the ABI) or mV (evidence over the window), with currents across 10000 raw."""
    volts = [cells * v for v in (4.2, 4.0, 3.7)]
    scale = 1e-6 if unit == "uV" else 1e-3
    currents = [-9999, -10001, -250000]
    body = [[c, round(v / scale), "", 300, "Discharging"] for c, v in zip(currents, volts)]
    write_raw(tmp_path, ["t_ns", *B], body, {"batteries": {"battery0": "/sys/class/power_supply/battery"}})
    sensors, _, rows = converted(tmp_path, None)
    assert [float(r["battery.voltage_v"]) for r in rows] == pytest.approx(volts, rel=1e-6)
    assert [float(r["battery.current_a"]) for r in rows] == pytest.approx([-c * 1e-6 for c in currents], rel=1e-5)
    assert [float(r["power.total_w"]) for r in rows] == pytest.approx(
        [-c * 1e-6 * v for c, v in zip(currents, volts)], rel=1e-5
    )
    source = "kernel ABI" if unit == "uV" else "evidence"
    assert f"voltage_now unit {unit} ({source})" in "\n".join(sensors["probes"]["sh_sampler"]["notes"])


def test_convert_pinned_supply_missing_and_unusable_supplies(tmp_path):
    write_raw(tmp_path, ["t_ns", *B], [["", "4000000", "", "", "Discharging"]], {"batteries": {"battery0": "/x/bms"}})
    sensors, _, rows = converted(tmp_path, {"supply": "battery"})
    assert sensors["power_method"] == "none" and "battery.power_w" not in rows[0]
    assert sensors["probes"]["sh_sampler"]["missing"][-1] == (
        "sys/class/power_supply: battery: pinned by sensors.battery.supply, not a supply of type Battery here "
        "(type Battery: bms)"
    )
    sensors, _, _ = converted(tmp_path, None)
    assert sensors["power_method"] == "none"
    assert (
        "no Battery supply of the system gives current_now or power_now (bms)"
        in (sensors["probes"]["sh_sampler"]["missing"][-1])
    )
