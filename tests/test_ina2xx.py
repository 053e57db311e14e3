"""INA2xx power monitors read from constructed hwmon and iio trees, chip by chip, in the kernel's units."""

from __future__ import annotations

import pytest
from lab.power_trees import hwmon, write

from melt.telemetry.ina2xx import PAIRED_CHANNELS, Ina2xxProbe

ONE_CHANNEL_CHIPS = sorted(c for c, pairs in PAIRED_CHANNELS.items() if pairs == (1,))


def detect(root):
    probe = Ina2xxProbe(str(root), {}, None)
    return probe, probe.detect()


def test_ina3221_three_labelled_channels_nc_and_the_shunt_sum_left_out(tmp_path):
    hwmon(tmp_path, 0, "ina3221", "1-0040", {
        1: {"label": "VDD_IN", "in_mv": 5072, "curr_ma": 1824},
        2: {"label": "VDD_CPU_GPU_CV", "in_mv": 5064, "curr_ma": 528},
        3: {"label": "NC", "in_mv": 0, "curr_ma": 0},
        4: {"in_mv": 1100},  # shunt voltage of channel 1, in uV: never paired with curr4 (a sum)
        7: {"label": "sum of shunt voltages", "in_mv": 3300},
    })  # fmt: skip
    write(tmp_path, "sys/class/hwmon/hwmon0/curr4_input", "2352")
    probe, d = detect(tmp_path)
    assert d.channels == ["power.vdd_in_w", "power.vdd_cpu_gpu_cv_w"]
    assert [r["label"] for r in d.rails] == ["VDD_IN", "VDD_CPU_GPU_CV"]
    assert all(r["method"] == "ina3221" and r["labelled"] for r in d.rails)
    values = probe.sample()
    assert values == pytest.approx({"power.vdd_in_w": 5.072 * 1.824, "power.vdd_cpu_gpu_cv_w": 5.064 * 0.528})
    assert "power.total_w" not in values  # the probe reports rails; the total is decided once, elsewhere


@pytest.mark.parametrize("chip", ONE_CHANNEL_CHIPS)
@pytest.mark.parametrize("files", ["power", "volts_amps", "both"])
def test_every_one_channel_chip_in_its_units(tmp_path, chip, files):
    """power1_input uW where the chip gives it (preferred: the chip's own product), else in1 mV x curr1 mA."""
    channel = {"in_mv": 12100, "curr_ma": 2500}  # 30.25 W
    if files in ("power", "both"):
        channel["power_uw"] = 30_000_000 if files == "both" else 30_250_000
    if files == "power":
        del channel["in_mv"], channel["curr_ma"]
    hwmon(tmp_path, 3, chip, "2-0041", {0: {"in_mv": 4}, 1: channel})  # in0 is the shunt voltage
    probe, d = detect(tmp_path)
    (r,) = d.rails
    assert (r["label"], r["labelled"], r["chip"], r["method"]) == (f"{chip} 2-0041", False, chip, chip)
    assert d.channels == [f"power.{chip}_2_0041_w"]
    expected = 30.0 if files == "both" else 30.25
    assert probe.sample() == {f"power.{chip}_2_0041_w": pytest.approx(expected)}


def test_labels_from_the_channel_or_the_hwmon_device(tmp_path):
    hwmon(tmp_path, 0, "ina226", "1-0044", {1: {"in_mv": 5000, "curr_ma": 100}}, label="VDD_5V_CARRIER")
    hwmon(tmp_path, 1, "ina238", "1-0045", {1: {"label": "VIN", "power_uw": 70_000_000}})
    probe, d = detect(tmp_path)
    assert [(r["label"], r["labelled"]) for r in d.rails] == [("VDD_5V_CARRIER", True), ("VIN", True)]
    assert probe.sample() == pytest.approx({"power.vdd_5v_carrier_w": 0.5, "power.vin_w": 70.0})


def test_thor_ina238_unlabelled_beside_the_labelled_ina3221(tmp_path):
    hwmon(tmp_path, 0, "ina3221", "2-0040", {
        1: {"label": "VDD_GPU", "in_mv": 12000, "curr_ma": 2500},
        2: {"label": "VDD_CPU_SOC_MSS", "in_mv": 12000, "curr_ma": 1250},
        3: {"label": "VIN_SYS_5V0", "in_mv": 5000, "curr_ma": 2400},
    })  # fmt: skip
    hwmon(tmp_path, 1, "ina238", "2-0044", {1: {"in_mv": 20000, "curr_ma": 3500, "power_uw": 70_000_000}})
    probe, d = detect(tmp_path)
    assert [r["label"] for r in d.rails] == ["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "ina238 2-0044"]
    assert probe.sample()["power.ina238_2_0044_w"] == pytest.approx(70.0)


def test_the_same_monitor_seen_twice_is_read_once(tmp_path):
    folder = hwmon(tmp_path, 0, "ina3221", "1-0040", {1: {"label": "VDD_IN", "in_mv": 5000, "curr_ma": 1000}})
    alias = tmp_path / "sys" / "bus" / "i2c" / "drivers" / "ina3221" / "1-0040" / "hwmon"
    alias.mkdir(parents=True)
    (alias / "hwmon0").symlink_to(folder)
    _, d = detect(tmp_path)
    assert d.channels == ["power.vdd_in_w"]


def test_jetpack4_iio_power_or_volts_times_amps(tmp_path):
    base = "sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0"
    for n, (label, files) in enumerate([("VDD_IN", {"in_power0_input": 1931}),
                                        ("VDD_CPU", {"in_voltage1_input": 5000, "in_current1_input": 46}),
                                        ("NC", {"in_power2_input": 0})]):  # fmt: skip
        write(tmp_path, f"{base}/rail_name_{n}", label)
        for name, value in files.items():
            write(tmp_path, f"{base}/{name}", str(value))
    probe, d = detect(tmp_path)
    assert [r["label"] for r in d.rails] == ["VDD_IN", "VDD_CPU"] and d.found[0].startswith("VDD_IN:")
    assert probe.sample() == pytest.approx({"power.vdd_in_w": 1.931, "power.vdd_cpu_w": 0.23})


def test_other_hwmon_chips_are_not_power_monitors(tmp_path):
    hwmon(tmp_path, 0, "nct7802", "0-0028", {1: {"in_mv": 3300, "curr_ma": 10}})
    hwmon(tmp_path, 1, "ina226", "0-0040", {1: {"label": "VIN"}})  # neither power1 nor in1+curr1
    _, d = detect(tmp_path)
    assert d.channels == [] and any("ina226 channel 1 has no power1_input" in m for m in d.missing)
    _, empty = detect(tmp_path / "nothing")
    assert empty.channels == [] and "no INA2xx power monitor" in empty.missing[0]
