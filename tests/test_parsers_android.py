"""Batteries through /sys/class/power_supply: supply choice, units and sign decided once per device
(profile pin > kernel ABI > evidence from a window), direction per reading, pins.

The generated variants encode a true value (A, V, W) in the unit a driver writes and check that the
true value comes back: across every magnitude boundary a unit rule could have (1000, 10000 raw), for
1S..6S packs, for the three sign conventions drivers use, and for power_now-only supplies.
"""

from __future__ import annotations

import os

import pytest

from melt.telemetry.android_battery import (
    AndroidBatteryError,
    BatteryReading,
    choose_supply,
    decide,
    driver_of,
    find_batteries,
    normalise,
    read_supply,
)

# Xiaomi Mi 6 `cat /sys/class/power_supply/bms/uevent` on battery, copied from
# tests/samples/android_power_supply.txt (from ../shared/samples): uA, uV, negative while discharging, tenths of C.
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

SCALE = {"uA": 1e-6, "mA": 1e-3, "uV": 1e-6, "mV": 1e-3, "uW": 1e-6}


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


def encode(value_si: float, unit: str) -> str:
    """A true value as a driver writing `unit` prints it: an integer."""
    return str(round(value_si / SCALE[unit]))


def window(*currents, voltage="3870000", status="Discharging"):
    return [{"current_now": str(c), "voltage_now": voltage, "status": status} for c in currents]


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


# --- which supply --------------------------------------------------------------------------------


def test_two_supplies_with_opposite_signs_each_read_right_and_the_choice_is_said(tmp_path):
    """One phone, two Battery supplies (the charger's `battery`, the fuel gauge's `bms`) with the same
    current in opposite signs: each one's sign rule comes from its own readings, the first by name is
    used, and the other is listed with what it reads."""
    make_supply(
        tmp_path, "battery", "Battery", {"current_now": "1202147", "voltage_now": "4137440", "status": "Discharging"}
    )
    make_supply(
        tmp_path, "bms", "Battery", {"current_now": "-1202147", "voltage_now": "4137440", "status": "Discharging"}
    )
    path, notes, missing = choose_supply(str(tmp_path))
    assert os.path.basename(path) == "battery" and missing == []
    assert notes[0].startswith("battery supply battery: the first by name") and "(battery, bms)" in notes[0]
    assert "supply bms (type Battery, not used): current_now -1202147, status Discharging" in notes
    pinned, notes, _ = choose_supply(str(tmp_path), "bms")
    assert os.path.basename(pinned) == "bms" and "pinned by the profile" in notes[0]
    for folder in (path, pinned):
        raw = read_supply(folder)
        plan = decide([raw])
        reading = plan.read(raw)
        assert reading.current_a == pytest.approx(1.202147) and reading.power_w == pytest.approx(1.202147 * 4.13744)
    assert (
        decide([read_supply(path)]).sign.value == "positive" and decide([read_supply(pinned)]).sign.value == "negative"
    )


def test_peripheral_and_absent_batteries_are_passed_over(tmp_path):
    """scope Device (a mouse's battery, via hid) and present 0 are not the system's battery."""
    make_supply(tmp_path, "aa-hid-mouse-battery", "Battery", {"scope": "Device", "current_now": "-1000"})
    make_supply(tmp_path, "BAT0", "Battery", {"present": "0"})
    make_supply(tmp_path, "BAT1", uevent="POWER_SUPPLY_TYPE=Battery\nPOWER_SUPPLY_CURRENT_NOW=756000\n")
    path, notes, _ = choose_supply(str(tmp_path))
    assert os.path.basename(path) == "BAT1"
    assert any("aa-hid-mouse-battery: scope Device" in n for n in notes)
    assert any("BAT0: present 0" in n for n in notes)


def test_pinned_supply_that_is_not_there_is_refused_with_what_there_is(tmp_path):
    make_supply(tmp_path, "bms", "Battery", {"current_now": "-1"})
    path, notes, missing = choose_supply(str(tmp_path), "battery")
    assert path is None and notes == []
    assert "battery: pinned by sensors.battery.supply" in missing[0] and "(type Battery: bms)" in missing[0]
    assert choose_supply(str(tmp_path / "empty"))[2] == [
        f"{tmp_path / 'empty'}/sys/class/power_supply: no supply of type Battery"
    ]


def test_acpi_battery_is_known_by_its_device(tmp_path):
    device = tmp_path / "sys" / "devices" / "LNXSYSTM:00" / "PNP0C0A:00"
    device.mkdir(parents=True)
    bat = make_supply(tmp_path, "BAT0", "Battery", {"power_now": "9525600"})
    (bat / "device").symlink_to(device)
    assert driver_of(str(bat)) == "acpi"
    assert driver_of(str(make_supply(tmp_path, "bms", "Battery"))) is None


# --- the readings, exactly ----------------------------------------------------------------


def test_phone_drawing_a_few_milliamps_is_read_in_microamps():
    r = normalise({"current_now": "-4306", "voltage_now": "3870000", "status": "Discharging"})
    assert r.current_a == pytest.approx(0.004306, rel=1e-12)
    assert r.power_w == pytest.approx(0.004306 * 3.87, rel=1e-12)
    assert any("current_now unit uA (kernel ABI)" in n and "-4306" in n for n in r.notes)


def test_laptop_pack_at_12_6_volts_gives_its_power():
    r = normalise({"current_now": "756000", "voltage_now": "12600000", "status": "Discharging"})
    assert r.voltage_v == pytest.approx(12.6) and r.current_a == pytest.approx(0.756)
    assert r.power_w == pytest.approx(9.5256) and round(r.power_w, 2) == 9.53
    assert any(n.startswith("discharge sign positive (evidence)") for n in r.notes)


def test_a_window_across_the_old_boundary_keeps_one_unit():
    plan = decide(window(-9500, -10500))
    assert plan.current.value == "uA" and plan.current.source == "kernel ABI"
    assert [plan.read(r).current_a for r in window(-9500, -10500)] == pytest.approx([0.0095, 0.0105])
    assert "readings looked at (2): -9500, -10500" in plan.notes[0]


# --- generated variants: units ---------------------------------------------------------------------

# true currents (A) whose encodings sit on either side of every magnitude boundary a rule could use
CURRENTS_A = [0.009999, 0.010000, 0.010001, 0.001000, 0.001001, 0.004306, 0.5, 1.202147, 3.2]


@pytest.mark.parametrize("amps", CURRENTS_A)
@pytest.mark.parametrize("sign", ["negative", "positive"])
def test_microamp_currents_across_boundaries(amps, sign):
    raw = encode(amps, "uA")
    raw = f"-{raw}" if sign == "negative" else raw
    r = normalise({"current_now": raw, "voltage_now": "3900000", "status": "Discharging"})
    assert r.current_a == pytest.approx(amps, rel=1e-9)
    assert r.power_w == pytest.approx(amps * 3.9, rel=1e-9)


@pytest.mark.parametrize("raw", [9999, 10000, 10001, 999, 1001, 1, 4306])
def test_milliamp_pin_across_boundaries(raw):
    r = normalise({"current_now": str(-raw), "voltage_now": "3900000", "status": "Discharging"}, current_unit="mA")
    assert r.current_a == pytest.approx(raw / 1000, rel=1e-12)
    assert any("current_now unit mA (profile pin)" in n for n in r.notes)


@pytest.mark.parametrize(
    "raws",
    [[9999, 10001], [10001, 9999, 10000], [9500, 10500, 9999], [999, 1001], [1001, 999, 1000], [4306, 12000, 800]],
)
def test_window_crossing_a_boundary_keeps_one_unit(raws):
    """Over a whole window there is one unit: the ABI's, since no reading makes it implausible."""
    rows = window(*(-r for r in raws))
    plan = decide(rows)
    assert plan.current.value == "uA"
    assert [plan.read(r).current_a for r in rows] == pytest.approx([r * 1e-6 for r in raws], rel=1e-12)


@pytest.mark.parametrize("raws", [[420], [850, 999], [1, 300, 999]])
def test_milliamp_driver_found_by_evidence_over_the_window(raws):
    """As uA every reading while Discharging is under 1 mA, which no device running the sampler
    draws: the driver writes mA (Samsung's does). The whole window gets mA."""
    rows = window(*(-r for r in raws), voltage="3912000")
    plan = decide(rows)
    assert plan.current.value == "mA" and plan.current.source == "evidence"
    assert "readings looked at" in plan.current.why
    assert [plan.read(r).current_a for r in rows] == pytest.approx([r / 1000 for r in raws], rel=1e-12)


def test_small_currents_while_charging_or_idle_are_not_evidence():
    """Near-zero currents on a charger are real microamps: only Discharging readings can say mA."""
    for status in ("Charging", "Full", "Not charging"):
        assert decide(window(300, 0, status=status)).current.value == "uA"


CELL_V = [3.0, 3.7, 4.2, 4.4]


@pytest.mark.parametrize("cells", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("cell_v", CELL_V)
def test_packs_in_microvolts_follow_the_abi(cells, cell_v):
    volts = cells * cell_v
    r = normalise({"current_now": "-500000", "voltage_now": encode(volts, "uV"), "status": "Discharging"})
    assert r.voltage_v == pytest.approx(volts, rel=1e-9)
    assert r.power_w == pytest.approx(0.5 * volts, rel=1e-9)
    assert any(n.startswith("voltage_now unit uV (kernel ABI)") for n in r.notes)


@pytest.mark.parametrize("cells", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("cell_v", CELL_V)
@pytest.mark.parametrize("pinned", [None, "mV"])
def test_packs_in_millivolts_by_evidence_or_pin(cells, cell_v, pinned):
    volts = cells * cell_v
    r = normalise(
        {"current_now": "-500", "voltage_now": encode(volts, "mV"), "status": "Discharging"}, voltage_unit=pinned
    )
    assert r.voltage_v == pytest.approx(volts, rel=1e-9)
    source = "profile pin" if pinned else "evidence"
    assert any(n.startswith(f"voltage_now unit mV ({source})") for n in r.notes)
    assert r.current_a == pytest.approx(0.5)  # a driver writing mV writes mA: said in the current note


@pytest.mark.parametrize("watts", [0.75, 9.5256, 45.0])
@pytest.mark.parametrize("status", ["Discharging", "Charging"])
def test_power_now_only_supply(watts, status):
    raw = {"power_now": encode(watts, "uW"), "voltage_now": "12600000", "status": status}
    r = normalise(raw)
    assert r.current_a is None  # not measured, not derived
    assert r.voltage_v == pytest.approx(12.6)
    if status == "Discharging":
        assert r.power_w == pytest.approx(watts, rel=1e-9) and r.power_from == "power_now"
    else:
        assert r.power_w is None and r.charging


def test_text_with_a_fraction_is_in_whole_units():
    r = normalise({"current_now": "-1.25", "voltage_now": "3.9", "status": "Discharging"})
    assert r.current_a == pytest.approx(1.25) and r.voltage_v == pytest.approx(3.9)


def test_a_reading_implausible_under_the_device_unit_is_empty_not_a_unit_change():
    rows = window(-500000, -500000, voltage="12600000") + [
        {"current_now": "-500000", "voltage_now": "0", "status": "Discharging"}
    ]
    plan = decide(rows)
    assert plan.voltage.value == "uV"
    last = plan.read(rows[-1])
    assert last.voltage_v is None and last.power_w is None and last.current_a == pytest.approx(0.5)
    assert any("voltage_now 0 uV" in n and "implausible" in n for n in last.notes)
    assert plan.read(rows[0]).voltage_v == pytest.approx(12.6)


def test_values_no_unit_makes_plausible_are_not_used():
    r = normalise({"current_now": "5", "voltage_now": "123", "status": "Discharging", "temp": "9999"})
    assert r.voltage_v is None and r.temp_c is None and r.power_w is None
    notes = " ".join(r.notes)
    assert "voltage_now unit not used (none)" in notes and "implausible" in notes
    r = normalise({"current_now": "-500000", "voltage_now": "12345678901", "status": "Discharging"})
    assert r.voltage_v is None and r.power_w is None and r.current_a == pytest.approx(0.5)  # 12346 V: no pack
    assert any("voltage_now 12345678901 uV" in n and "implausible" in n for n in r.notes)
    r = normalise({"current_now": "n/a", "status": "Discharging"})
    assert r.current_a is None and r.voltage_v is None
    assert any("not a number" in n for n in r.notes) and any("no voltage_now reading" in n for n in r.notes)


# --- generated variants: sign and direction ------------------------------------------------------


@pytest.mark.parametrize("convention", ["negative", "positive", "magnitude"])
def test_sign_conventions_found_from_the_window(convention):
    """A window where the phone discharges, then charges: each convention reads the same truth."""
    truth = [("Discharging", 0.8), ("Discharging", 1.1), ("Charging", -1.5)]  # A, positive = discharging

    def raw_of(a):
        if convention == "magnitude":
            return abs(a)
        return -a if convention == "negative" else a

    rows = [{"current_now": encode(raw_of(a), "uA"), "voltage_now": "4000000", "status": s} for s, a in truth]
    plan = decide(rows)
    assert plan.sign.value == convention and plan.sign.source == "evidence"
    readings = [plan.read(r) for r in rows]
    assert [r.current_a for r in readings] == pytest.approx([a for _, a in truth])
    assert [r.power_w for r in readings] == pytest.approx([0.8 * 4.0, 1.1 * 4.0, None])
    assert readings[2].charging and "charging: battery power is not device power" in readings[2].notes[-1]


def test_acpi_magnitudes_take_direction_from_status_alone():
    plan = decide(window(756000, voltage="12600000", status="Charging"), driver="acpi")
    assert plan.sign.value == "magnitude" and plan.sign.source == "driver"
    assert plan.read(window(756000, voltage="12600000", status="Charging")[0]).current_a == pytest.approx(-0.756)
    unknown = plan.read({"current_now": "756000", "voltage_now": "12600000", "status": "Not charging"})
    assert unknown.current_a is None and unknown.power_w is None and unknown.direction == "unknown"


def test_not_charging_is_weak_evidence_the_sign_decides():
    """'Not charging' while the charger input is suspended: the battery discharges, and is counted."""
    rows = window(-900000, voltage="4000000") + [
        {"current_now": "-700000", "voltage_now": "4000000", "status": "Not charging"},  # out: discharging
        {"current_now": "0", "voltage_now": "4000000", "status": "Not charging"},  # idle: on the charger
        {"current_now": "200000", "voltage_now": "4000000", "status": "Not charging"},  # in: charging
    ]
    plan = decide(rows)
    assert plan.sign.value == "negative" and plan.sign.source == "evidence"
    out, idle, into = (plan.read(r) for r in rows[1:])
    assert out.direction == "discharging" and out.power_w == pytest.approx(2.8)
    assert "direction discharging from the sign under rule negative" in " ".join(out.notes)
    assert idle.direction == "external" and idle.power_w is None and idle.current_a == 0.0
    assert into.direction == "charging" and into.power_w is None and into.current_a == pytest.approx(-0.2)


def test_no_status_follows_the_kernel_abi_sign(tmp_path):
    """The Mi 6 uevent has no status: the ABI says negative current is discharge, and that is said.
    (It was 'direction unknown' before: the ABI defines the sign, so following it is not a guess.)"""
    raw = read_supply(str(make_supply(tmp_path, "bms", "Battery", uevent=MI6_UEVENT)))
    r = normalise(raw)
    assert r.status is None and r.direction == "discharging"
    assert r.current_a == pytest.approx(1.202147) and r.power_w == pytest.approx(1.202147 * 4.13744)
    assert any(n.startswith("discharge sign negative (kernel ABI)") for n in r.notes)
    pinned = normalise(raw, discharge_sign="positive")  # a pin wins: this reading is then into the battery
    assert pinned.current_a == pytest.approx(-1.202147) and pinned.power_w is None and pinned.charging


def test_sample_ua_negative_discharge(tmp_path):
    bms = make_supply(tmp_path, "bms", "Battery", {"status": "Discharging"}, MI6_UEVENT)
    r = normalise(read_supply(str(bms)))
    assert isinstance(r, BatteryReading)
    assert r.current_a == pytest.approx(1.202147) and r.voltage_v == pytest.approx(4.13744)
    assert r.temp_c == 36.0 and r.capacity_pct == 70 and r.status == "Discharging" and r.charging is False
    assert r.values() == {
        "battery.current_a": r.current_a,
        "battery.voltage_v": r.voltage_v,
        "battery.power_w": r.power_w,
        "battery.temp_c": 36.0,
    }


def test_charging_phone_has_no_power():
    r = normalise({"current_now": "1500000", "voltage_now": "4300000", "status": "Charging", "temp": "295"})
    assert r.charging is True and r.power_w is None
    assert r.current_a == pytest.approx(-1.5)  # into the battery: the ABI's positive-charging rule
    assert any("charging" in n and "power_w is None" in n for n in r.notes)


def test_full_is_external_power():
    r = normalise({"current_now": "0", "voltage_now": "4400000", "status": "Full"})
    assert r.power_w is None and r.charging is False and r.current_a == 0.0
    assert any("external power" in n for n in r.notes)


def test_pins_override_detection():
    r = normalise({"current_now": "5000", "voltage_now": "4000", "status": "Discharging"}, current_unit="uA")
    assert r.current_a == pytest.approx(0.005)
    r = normalise({"current_now": "-900", "voltage_now": "4", "status": "Unknown"}, "mA", "V", "negative")
    assert r.current_a == pytest.approx(0.9) and r.voltage_v == 4.0
    assert r.power_w == pytest.approx(3.6)  # direction from the pinned sign when status does not tell


@pytest.mark.parametrize("pins", [{"current_unit": "microamps"}, {"voltage_unit": "uv"}, {"discharge_sign": "down"}])
def test_bad_pins_rejected(pins):
    with pytest.raises(AndroidBatteryError):
        normalise({"current_now": "1"}, **pins)


def test_non_finite_values_are_not_numbers():
    r = normalise({"current_now": "inf", "voltage_now": "nan", "status": "Discharging"})
    assert r.current_a is None and r.voltage_v is None and r.power_w is None
