"""Android battery: supply discovery by type, uevent fallback, unit and sign detection, pins."""

from __future__ import annotations

import pytest

from melt.telemetry.android_battery import (
    AndroidBatteryError,
    BatteryReading,
    find_batteries,
    normalise,
    read_supply,
)

# Xiaomi Mi 6 `cat /sys/class/power_supply/bms/uevent` on battery, copied from
# /work/shared/samples/android_power_supply.txt: uA, uV, negative while discharging, tenths of C.
# It has no POWER_SUPPLY_STATUS line.
MI6_UEVENT = """\
POWER_SUPPLY_NAME=bms
POWER_SUPPLY_CAPACITY=70
POWER_SUPPLY_TEMP=360
POWER_SUPPLY_VOLTAGE_NOW=4137440
POWER_SUPPLY_VOLTAGE_OCV=4010748
POWER_SUPPLY_CURRENT_NOW=-1202147
POWER_SUPPLY_RESISTANCE_ID=67000
POWER_SUPPLY_RESISTANCE=145263
POWER_SUPPLY_BATTERY_TYPE=c1_atl
POWER_SUPPLY_CHARGE_FULL_DESIGN=3350000
POWER_SUPPLY_VOLTAGE_MAX_DESIGN=4400000
POWER_SUPPLY_CYCLE_COUNT=151
POWER_SUPPLY_CHARGE_FULL=2187885
POWER_SUPPLY_CHARGE_COUNTER=1673935
"""


def make_supply(root, name, kind=None, files=None, uevent=None):
    folder = root / "sys" / "class" / "power_supply" / name
    folder.mkdir(parents=True)
    if kind is not None:
        (folder / "type").write_text(kind + "\n")
    for key, value in (files or {}).items():
        (folder / key).write_text(f"{value}\n")
    if uevent is not None:
        (folder / "uevent").write_text(uevent)
    return folder


# --- discovery and reading -------------------------------------------------------------------------


def test_find_batteries_by_type_not_name(tmp_path):
    make_supply(tmp_path, "usb", "USB", {"current_now": "500000"})
    bms = make_supply(tmp_path, "bms", "Battery", uevent=MI6_UEVENT)
    make_supply(tmp_path, "battery", uevent="POWER_SUPPLY_TYPE=Battery\n")  # no type file: uevent says
    make_supply(tmp_path, "dc", "Mains")
    found = find_batteries(str(tmp_path))
    assert found == sorted([str(bms), str(bms.parent / "battery")])
    assert find_batteries(str(tmp_path / "nowhere")) == []


def test_read_supply_uevent_fallback_sample(tmp_path):
    bms = make_supply(tmp_path, "bms", "Battery", uevent=MI6_UEVENT)
    raw = read_supply(str(bms))
    assert raw == {"current_now": "-1202147", "voltage_now": "4137440", "temp": "360", "capacity": "70"}


def test_read_supply_files_win_over_uevent(tmp_path):
    bms = make_supply(tmp_path, "bms", "Battery", {"status": "Discharging", "current_now": "-1000000"}, MI6_UEVENT)
    raw = read_supply(str(bms))
    assert raw["status"] == "Discharging"
    assert raw["current_now"] == "-1000000"
    assert raw["voltage_now"] == "4137440"


def test_read_supply_missing_folder(tmp_path):
    with pytest.raises(AndroidBatteryError):
        read_supply(str(tmp_path / "sys" / "class" / "power_supply" / "nope"))


# --- normalise -------------------------------------------------------------------------------------


def sample_raw(tmp_path, **extra):
    bms = make_supply(tmp_path, "bms", "Battery", extra, MI6_UEVENT)
    return read_supply(str(bms))


def test_sample_ua_negative_discharge_detected_from_status(tmp_path):
    r = normalise(sample_raw(tmp_path, status="Discharging"))
    assert isinstance(r, BatteryReading)
    assert r.current_a == pytest.approx(1.202147)
    assert r.voltage_v == pytest.approx(4.13744)
    assert r.temp_c == 36.0
    assert r.capacity_pct == 70
    assert r.status == "Discharging" and r.charging is False
    assert r.power_w == pytest.approx(1.202147 * 4.13744)
    notes = " ".join(r.notes)
    assert "uA detected" in notes and "uV detected" in notes and "discharge sign negative detected" in notes
    assert r.values() == {
        "battery.current_a": r.current_a,
        "battery.voltage_v": r.voltage_v,
        "battery.power_w": r.power_w,
        "battery.temp_c": 36.0,
    }


def test_sample_as_recorded_has_no_status_so_direction_is_not_guessed(tmp_path):
    r = normalise(sample_raw(tmp_path))
    assert r.status is None
    assert r.current_a == pytest.approx(1.202147)  # magnitude and units still read
    assert r.power_w is None
    assert any("direction unknown" in n for n in r.notes)
    pinned = normalise(sample_raw(tmp_path / "again"), discharge_sign="negative")
    assert pinned.power_w == pytest.approx(1.202147 * 4.13744)
    assert pinned.current_a == pytest.approx(1.202147)
    assert any("discharge sign negative pinned by profile" in n for n in pinned.notes)


def test_ma_mv_positive_discharge_phone():
    r = normalise({"current_now": "850", "voltage_now": "3850", "temp": "312", "status": "Discharging"})
    assert r.current_a == pytest.approx(0.85)
    assert r.voltage_v == pytest.approx(3.85)
    assert r.temp_c == pytest.approx(31.2)
    assert r.power_w == pytest.approx(0.85 * 3.85)
    notes = " ".join(r.notes)
    assert "current unit mA detected" in notes and "voltage unit mV detected" in notes
    assert "discharge sign positive detected" in notes


def test_samsung_style_ma_current_uv_voltage():
    r = normalise({"current_now": "-420", "voltage_now": "3912000", "status": "Discharging"})
    assert r.current_a == pytest.approx(0.42) and r.voltage_v == pytest.approx(3.912)


def test_charging_phone_has_no_power():
    r = normalise({"current_now": "1500000", "voltage_now": "4300000", "status": "Charging", "temp": "295"})
    assert r.charging is True
    assert r.power_w is None
    assert r.current_a == pytest.approx(-1.5)  # into the battery; this driver is negative-discharge
    assert any("charging" in n and "power_w is None" in n for n in r.notes)


@pytest.mark.parametrize("status", ["Full", "Not charging"])
def test_on_external_power_has_no_power(status):
    r = normalise({"current_now": "0", "voltage_now": "4400000", "status": status})
    assert r.power_w is None and r.charging is False
    assert r.current_a == 0.0
    assert any("external power" in n for n in r.notes)


def test_pins_override_detection():
    # 5000 would be detected as mA; the profile says uA
    r = normalise({"current_now": "5000", "voltage_now": "4000", "status": "Discharging"}, current_unit="uA")
    assert r.current_a == pytest.approx(0.005)
    assert any("current unit uA pinned by profile" in n for n in r.notes)
    r = normalise({"current_now": "-900", "voltage_now": "4", "status": "Unknown"}, "mA", "V", "negative")
    assert r.current_a == pytest.approx(0.9) and r.voltage_v == 4.0
    assert r.power_w == pytest.approx(3.6)  # direction from the pinned sign when status does not tell


def test_amps_as_fractions():
    r = normalise({"current_now": "-1.25", "voltage_now": "3.9", "status": "Discharging"})
    assert r.current_a == pytest.approx(1.25) and r.voltage_v == pytest.approx(3.9)


def test_ambiguous_or_bad_values_are_not_guessed():
    r = normalise({"current_now": "5", "voltage_now": "12345678901", "status": "Discharging", "temp": "9999"})
    assert r.current_a is None and r.voltage_v is None and r.temp_c is None and r.power_w is None
    notes = " ".join(r.notes)
    assert "current unit not detected" in notes and "voltage unit not detected" in notes and "implausible" in notes
    r = normalise({"current_now": "n/a", "status": "Discharging"})
    assert r.current_a is None and r.voltage_v is None
    assert any("not a number" in n for n in r.notes) and any("voltage_now missing" in n for n in r.notes)


@pytest.mark.parametrize("pins", [{"current_unit": "microamps"}, {"voltage_unit": "uv"}, {"discharge_sign": "down"}])
def test_bad_pins_rejected(pins):
    with pytest.raises(AndroidBatteryError):
        normalise({"current_now": "1"}, **pins)


def test_non_finite_values_are_not_numbers():
    r = normalise({"current_now": "inf", "voltage_now": "nan", "status": "Discharging"})
    assert r.current_a is None and r.voltage_v is None and r.power_w is None
