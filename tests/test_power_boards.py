"""The issue's boards end to end, through `melt devices probe --json` and `melt run`: an older L4T
tegrastats line, a Jetson AGX Thor (tegrastats only, and with its INA238 in sysfs), a profile's pin
that only a later probe can honour, and tokens not understood listed in sensors.json. The trees
are constructed (tests/lab/power_trees.py); the tegrastats lines are the issue's."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from conftest import read_trace, run_melt, run_static_case
from lab.power_trees import device_tree, hwmon, tegrastats, thermal_zone

OLD_L4T = (
    "RAM 2900/3983MB (lfb 40x4MB) SWAP 700/8192MB (cached 200MB) cpu [20%,10%,30%,0%]@518 EMC 2%@800 APE 25 GR3D 7%@76"
)
THOR = (
    "08-30-2025 10:00:00 RAM 20642/125772MB (lfb 2x4MB) CPU [23%@2601,10%@2601,off,14%@2601] EMC_FREQ 3%@4266 "
    "GR3D_FREQ @[1575,1575,1575] cpu@52.968C/52.968C tj@55.1C/55.1C "
    "VDD_GPU 30000mW/30000mW/30000mW VDD_CPU_SOC_MSS 15000mW/15000mW/15000mW "
    "VIN_SYS_5V0 12000mW/12000mW/12000mW VIN 70000mW/35000mW/70000mW"
)
THOR_RAILS = {1: ("VDD_GPU", 12000, 2500), 2: ("VDD_CPU_SOC_MSS", 12000, 1250), 3: ("VIN_SYS_5V0", 5000, 2400)}


def old_l4t(root: Path) -> None:
    tegrastats(root, [OLD_L4T])
    thermal_zone(root, 0, "CPU-therm", 41000)


def thor_tegrastats_only(root: Path) -> None:
    tegrastats(root, [THOR])


def thor_sysfs(root: Path) -> None:
    device_tree(root, "NVIDIA Jetson AGX Thor Developer Kit", ["nvidia,p3971-0080+p3834-0008", "nvidia,tegra264"])
    hwmon(
        root,
        0,
        "ina3221",
        "2-0040",
        {n: {"label": r, "in_mv": mv, "curr_ma": ma} for n, (r, mv, ma) in THOR_RAILS.items()},
    )
    hwmon(root, 1, "ina238", "2-0044", {1: {"in_mv": 19800, "curr_ma": 3400, "power_uw": 67_320_000}})
    tegrastats(root, [THOR])


def pinned_across_probes(root: Path) -> None:
    """sysfs shows two of the rails; tegrastats prints a third. The pin names the third."""
    hwmon(root, 0, "ina3221", "1-0040", {1: {"label": "VDD_IN", "in_mv": 5000, "curr_ma": 2000},
                                         2: {"label": "VDD_SOC", "in_mv": 5000, "curr_ma": 600}})  # fmt: skip
    tegrastats(root, ["RAM 1000/7620MB VDD_IN 10000mW/10000mW VDD_SOC 3000mW/3000mW VDD_CPU_GPU_CV 4321mW/4000mW"])


def with_unknown_tokens(root: Path) -> None:
    tegrastats(root, [
        "RAM 1000/7620MB CPU [10%@1000] ~~ EMC_FREQ 1%@2000 PMIC@100C VDD_IN 5000mW/5000mW VDD_SOC 1000mW/1000mW",
        "RAM 1000/7620MB CPU [10%@1000] EMC_FREQ 1%@2000 zz:top VDD_IN 5000mW/5000mW VDD_SOC 1000mW/1000mW",
    ])  # fmt: skip


# board -> (tree, pin, power_method, power.total_w, rule starts with, channels that must read so)
CASES = {
    "old-l4t": (old_l4t, None, "none", None, "none: no power rail",
                {"cpu.util_pct": 15.0, "cpu0.freq_mhz": 518, "cpu3.freq_mhz": 518, "emc.util_pct": 2,
                 "emc.freq_mhz": 800, "gpu.util_pct": 7, "gpu.freq_mhz": 76, "ape.freq_mhz": 25,
                 "mem.used_mb": 2900, "swap.cached_mb": 200}),
    "thor-tegrastats": (thor_tegrastats_only, None, "tegrastats", 70.0,
                        "board input rail: VIN is the input of a Jetson AGX Thor",
                        {"power.vin_w": 70.0, "power.vdd_gpu_w": 30.0, "gpu.freq_mhz": 1575, "temp.cpu_c": 52.968,
                         "cpu.util_pct": (23 + 10 + 14) / 3}),
    "thor-sysfs": (thor_sysfs, None, "ina238", 67.32,
                   "board input rail: the unlabelled ina238 (ina238 2-0044) measures VIN",
                   {"power.ina238_2_0044_w": 67.32, "power.vdd_gpu_w": 30.0, "power.vin_sys_5v0_w": 12.0,
                    "power.vin_w": 70.0}),
    "pinned": (pinned_across_probes, "vdd_cpu_gpu_cv", "tegrastats", 4.321,
               "profile pin: sensors.power_total = vdd_cpu_gpu_cv",
               {"power.vdd_in_w": 10.0, "power.vdd_soc_w": 3.0}),
}  # fmt: skip


def profile(tmp_path: Path, board: str) -> Path:
    build, pin = CASES[board][0], CASES[board][1]
    root = tmp_path / "root"
    build(root)
    path = tmp_path / f"{board}.yaml"
    sensors = f"{{root: {root}, tegrastats: /usr/bin/tegrastats" + (f", power_total: {pin}" if pin else "") + "}"
    path.write_text(f"name: lab-{board}\nplatform: jetson\ntransport: {{kind: local}}\nsensors: {sensors}\n")
    return path


@pytest.mark.parametrize("board", sorted(CASES))
def test_probe_json_says_the_power_decision(tmp_path, board):
    _, _, method, _, rule, channels = CASES[board]
    proc = run_melt("devices", "probe", profile(tmp_path, board), "--json")
    assert proc.returncode == 0, proc.stderr
    sensors = json.loads(proc.stdout)["sensors"]
    assert sensors["power_method"] == method
    assert sensors["power_rule"].startswith(rule), sensors["power_rule"]
    assert set(channels) <= set(sensors["channels"])
    assert ("power.total_w" in sensors["channels"]) == (method != "none")
    text = run_melt("devices", "probe", profile(tmp_path / "text", board)).stdout
    assert f"power method {method}" in text and f"total power: {rule}" in text


@pytest.mark.parametrize("board", sorted(CASES))
def test_run_writes_the_channels_and_the_total(tmp_path, models, board):
    _, _, method, total_w, rule, channels = CASES[board]
    case_dir = run_static_case(tmp_path, models, profile(tmp_path, board))
    trace = read_trace(case_dir)
    for channel, value in channels.items():
        assert trace[channel] and statistics.median(trace[channel]) == pytest.approx(value, rel=1e-5), channel
    metrics = json.loads((case_dir / "metrics.json").read_text())
    assert metrics["summary"]["power_method"] == method
    assert metrics["telemetry"]["power_rule"].startswith(rule)
    if total_w is None:
        assert "power.total_w" not in trace
        assert metrics["summary"]["power_avg_w"] is None and "no power sensor" in metrics["missing"]["power_avg_w"]
    else:
        assert statistics.median(trace["power.total_w"]) == pytest.approx(total_w)
        assert metrics["telemetry"]["idle_baseline_w"] == pytest.approx(total_w, rel=1e-3)


def test_rails_without_a_known_input_give_no_total_and_say_why(tmp_path):
    root = tmp_path / "root"
    tegrastats(root, ["RAM 1000/7620MB VDD_A 1000mW/1000mW VDD_B 2000mW/2000mW"])
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: custom\ntransport: {{kind: local}}\nsensors: {{root: {root}, tegrastats: /usr/bin/tegrastats}}\n"
    )
    sensors = json.loads(run_melt("devices", "probe", path, "--json").stdout)["sensors"]
    assert sensors["power_total"] is None and sensors["power_method"] == "none"
    assert "pin sensors.power_total" in sensors["power_rule"] and "VDD_A, VDD_B" in sensors["power_rule"]


def test_tokens_not_understood_are_listed_with_their_line_form(tmp_path, models):
    root = tmp_path / "root"
    with_unknown_tokens(root)
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: skip\ntransport: {{kind: local}}\nsensors: {{root: {root}, tegrastats: /usr/bin/tegrastats}}\n"
    )
    case_dir = run_static_case(tmp_path, models, path, repetitions=3)
    tegra = json.loads((case_dir / "sensors.json").read_text())["probes"]["tegrastats"]
    assert set(tegra["skipped"]) == {"~~"}  # seen before detection ended
    seen = tegra["run"]["skipped"]  # over the whole run: both lines' tokens, counted, with the line form
    assert set(seen) == {"~~", "zz:top"} and all(s["count"] >= 2 for s in seen.values())
    assert seen["~~"]["form"] == "CPU [x%@f]; EMC_FREQ; zone@tC; rails mW cur/avg"
    assert tegra["run"]["lines"] >= 4 and tegra["run"]["malformed_lines"] == 0
    assert tegra["run"]["dropped"]["PMIC@100C"]["why"] == "a fixed 100 C placeholder, not a temperature"
    trace = read_trace(case_dir)
    assert statistics.median(trace["emc.freq_mhz"]) == 2000 and statistics.median(trace["power.total_w"]) == 5.0
