"""Batteries through /sys/class/power_supply, on Android and Linux (standard library only).

The format is the kernel's power_supply class ABI:
- Documentation/ABI/testing/sysfs-class-power: current_now "Represented in microamps. Negative values
  are used for discharging batteries, positive values for charging batteries"; voltage_now "Represented
  in microvolts"; temp "Represented in 1/10 Degrees Celsius"; status one of "Unknown", "Charging",
  "Discharging", "Not charging", "Full"; type "Battery", "UPS", "Mains", "USB", "Wireless".
- include/linux/power_supply.h: "All voltages, currents, charges, energies, time and temperatures in
  uV, uA, uAh, uWh, seconds and tenths of degree Celsius unless otherwise stated."
- power_now is not in that file: drivers write microwatts (drivers/acpi/battery.c: the ACPI rate in mW
  x 1000; power_supply_hwmon.c hands it unscaled to hwmon's power1_input, which is in microwatts).
- scope (kernel commit 25a0bc2dfc2e, 3.3): "System" powers the whole system, "Device" a specific
  device (a mouse, a stylus); a supply without scope is System.
- Every attribute is also a POWER_SUPPLY_<NAME>= line of the supply's uevent file.

Drivers differ from the ABI, and this module says so rather than hiding it: some vendors write
current_now in mA (Samsung) or voltage_now in mV, some report discharge as positive current, and the
ACPI battery driver (most x86 laptops) reports magnitudes only (abs() of the rate, direction in status).

How a device is read (decide(), once per device, over a window of readings; Plan.read() per sample):
- units: the profile's pin, else the kernel ABI (uA, uV, uW), else evidence from the window where
  the ABI reading is implausible: text with a fraction (the kernel prints integers) is A or V;
  voltage_now that as uV is under 0.5 V in every reading but as mV (or V) is a 1S..6S pack is mV
  (V); current_now (power_now) that as uA (uW) would be under 1 mA (1 mW) in every reading taken
  while Discharging, less than any device awake enough to run the sampler draws, is mA (mW); and
  current_now of a driver whose voltage_now was found in mV is mA. Never per sample: a reading
  implausible under the device's unit is an empty cell with the reason, not a unit change.
- sign: the profile's pin, else the ACPI driver's known rule (magnitudes), else evidence across the
  window (the current's sign in readings whose status is Discharging, else Charging; the same sign
  under both is a magnitude-only driver), else the kernel ABI (negative = discharging).
- direction, per sample: status Discharging, Charging and Full are taken as they are; "Not charging",
  "Unknown" or no status say nothing certain (a phone whose charger input is suspended discharges
  under "Not charging"), so the current's sign under the device's sign rule decides.
Battery power is device power only while the battery discharges; charging, or on external power with
the battery idle, power_w is None with the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field


class AndroidBatteryError(ValueError):
    """A supply folder that cannot be read, or a pinned unit/sign that is not one of the known ones."""


FIELDS = ("current_now", "voltage_now", "power_now", "temp", "status", "capacity", "scope", "present")

CURRENT_UNITS = {"uA": 1e-6, "mA": 1e-3, "A": 1.0}
VOLTAGE_UNITS = {"uV": 1e-6, "mV": 1e-3, "V": 1.0}
POWER_UNITS = {"uW": 1e-6, "mW": 1e-3, "W": 1.0}
DISCHARGE_SIGNS = ("negative", "positive")
SIGN_RULES = (*DISCHARGE_SIGNS, "magnitude")  # magnitude: the driver reports |I|; status gives direction

ABI_DOC = "Documentation/ABI/testing/sysfs-class-power"
ACPI_BATTERY_HID = "PNP0C0A"  # ACPI "Control Method Battery" (ACPI spec, 10.2); drivers/acpi/battery.c

# Plausibility bounds (why each: in the comment; the unit decision uses the first three).
PACK_RANGE_V = (2.5, 30.0)  # a 1S cell at its 2.5 V cut-off up to a full 6S pack (6 x 4.5 V = 27 V)
ABI_VOLTAGE_FLOOR_V = 0.5  # no battery powering a running device reads less
AWAKE_FLOOR_A = 1e-3  # a device awake enough to run the sampler draws more (a suspended phone: a few mA)
AWAKE_FLOOR_W = 1e-3
MAX_VOLTAGE_V = 100.0  # beyond any pack a device that runs melt uses: a reading error
MAX_CURRENT_A = 50.0
MAX_POWER_W = 1000.0
TEMP_RANGE_C = (-40.0, 150.0)

DISCHARGING, CHARGING, FULL, NOT_CHARGING = "discharging", "charging", "full", "not charging"
STRONG_STATUSES = (DISCHARGING, CHARGING)  # the only two that say which way the current flows
SHOWN_READINGS = 6  # readings listed in a note; more are summarised as min..max


# --- reading the folder ------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:  # missing, or a driver that answers EINVAL/ENODATA to a read
        return None


def _uevent(folder: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (_read(os.path.join(folder, "uevent")) or "").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.startswith("POWER_SUPPLY_"):
            out[key[len("POWER_SUPPLY_") :].lower()] = value.strip()
    return out


def _supply_type(folder: str) -> str | None:
    kind = _read(os.path.join(folder, "type"))
    return kind if kind is not None else _uevent(folder).get("type")


def find_batteries(root: str = "/") -> list[str]:
    """Supply folders under <root>/sys/class/power_supply whose type is Battery, sorted by name.

    Found by type, not by name (bms, battery, BAT0, max170xx_battery...); the `type` file first, else
    the POWER_SUPPLY_TYPE line of uevent. A missing folder gives [].
    """
    base = os.path.join(root, "sys", "class", "power_supply")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [os.path.join(base, n) for n in names if (_supply_type(os.path.join(base, n)) or "").lower() == "battery"]


def read_supply(path: str) -> dict[str, str]:
    """Raw text of current_now, voltage_now, power_now, temp, status, capacity, scope, present.

    Individual files first; uevent (POWER_SUPPLY_*) fills the ones missing. Keys with no value anywhere
    are absent. Raises AndroidBatteryError if path is not a folder.
    """
    if not os.path.isdir(path):
        raise AndroidBatteryError(f"{path}: not a power_supply folder")
    raw: dict[str, str] = {}
    for key in FIELDS:
        value = _read(os.path.join(path, key))
        if value:
            raw[key] = value
    if len(raw) < len(FIELDS):
        for key, value in _uevent(path).items():
            if key in FIELDS and key not in raw and value:
                raw[key] = value
    return raw


def driver_of(path: str) -> str | None:
    """'acpi' when the supply's device is an ACPI Control Method Battery (HID PNP0C0A), else None.

    drivers/acpi/battery.c writes current_now and power_now as abs() of the ACPI rate: no sign.
    """
    target = os.path.realpath(os.path.join(path, "device"))
    return "acpi" if os.path.basename(target).upper().startswith(ACPI_BATTERY_HID) else None


def choose_supply(root: str, pinned: str | None = None) -> tuple[str | None, list[str], list[str]]:
    """The battery supply to read under root: (folder or None, notes, missing); see pick_supply.

    Supplies of scope Device (a peripheral's battery: a mouse, a stylus) and with present 0 are not
    the system's battery and are passed over, unless pinned.
    """
    where = os.path.join(root, "sys", "class", "power_supply")
    batteries = find_batteries(root)
    if not batteries:
        return None, [], [f"{where}: no supply of type Battery"]
    raws = {os.path.basename(b): read_supply(b) for b in batteries}
    passed: dict[str, str] = {}
    for name, raw in raws.items():
        if (raw.get("scope") or "").lower() == "device":
            passed[name] = "scope Device (powers a peripheral, not the system): passed over"
        elif raw.get("present") == "0":
            passed[name] = "present 0 (no battery): passed over"
    chosen, notes, missing = pick_supply({name: [raw] for name, raw in raws.items()}, pinned, passed)
    if chosen is None:
        return None, notes, [f"{where}: {missing}"]
    return os.path.join(where, chosen), notes, []


def pick_supply(
    readings: dict[str, list[dict]], pinned: str | None = None, passed: dict[str, str] | None = None
) -> tuple[str | None, list[str], str | None]:
    """Which of a device's Battery supplies is read: (name or None, notes, why none).

    readings: supply name -> its readings (read_supply dicts), names in the order to prefer (by
    name, as the kernel lists them). pinned (the profile's sensors.battery.supply) wins; else the
    first not in passed (name -> why it is not the system's battery) whose readings give current_now
    or power_now. The notes say which and why, and list the others with their first reading: two
    supplies of one phone can report one current with opposite signs, and the reader should see it.
    """
    passed = passed or {}
    if pinned:
        if pinned not in readings:
            return (
                None,
                [],
                f"{pinned}: pinned by sensors.battery.supply, not a supply of type Battery here "
                + (f"(type Battery: {', '.join(readings) or 'none'})"),
            )
        chosen, reason = pinned, "pinned by the profile (sensors.battery.supply)"
    else:
        usable = [
            name
            for name, rows in readings.items()
            if name not in passed and any("current_now" in r or "power_now" in r for r in rows)
        ]
        if not usable:
            notes = [f"supply {name}: {why}" for name, why in passed.items()]
            return (
                None,
                notes,
                f"no Battery supply of the system gives current_now or power_now ({', '.join(readings)})",
            )
        chosen = usable[0]
        reason = "the first by name of the system's Battery supplies that give current_now or power_now"
        if len(usable) > 1:
            reason += f" ({', '.join(usable)}); pin sensors.battery.supply to choose another"
    notes = [f"battery supply {chosen}: {reason}"]
    for name, rows in readings.items():
        if name in passed and name != chosen:
            notes.append(f"supply {name}: {passed[name]}")
        elif name != chosen:
            first = next((r for r in rows if r), {})
            seen = ", ".join(f"{k} {first[k]}" for k in ("current_now", "power_now", "status") if k in first)
            notes.append(f"supply {name} (type Battery, not used): {seen or 'no readings'}")
    return chosen, notes, None


# --- numbers -----------------------------------------------------------------------------------------


def _number(value) -> tuple[float | None, bool]:
    """(value, written as an integer). Accepts int, float, or text; non-finite is None."""
    if value is None or isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return float(value), True
    if isinstance(value, float):
        return (value, value.is_integer()) if math.isfinite(value) else (None, False)
    text = str(value).strip()
    try:
        return float(int(text)), True
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None, False
    return (number, False) if math.isfinite(number) else (None, False)


def _status(value) -> str:
    return str(value).strip().lower() if value not in (None, "") else ""


def _text(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _looked_at(values: list[float]) -> str:
    """The readings a decision looked at, as a note shows them: all of a few, else count and range."""
    if not values:
        return "no readings"
    if len(values) <= SHOWN_READINGS:
        return f"readings looked at ({len(values)}): " + ", ".join(map(_text, values))
    return f"readings looked at ({len(values)}): {_text(min(values))} .. {_text(max(values))}"


# --- the decision, once per device -------------------------------------------------------------------


@dataclass
class Decision:
    """One unit or the sign rule of a device: the value, where it came from, and why."""

    value: str | None  # uA/mA/A, uV/mV/V, uW/mW/W, negative/positive/magnitude; None: not usable
    source: str  # "profile pin" | "kernel ABI" | "evidence" | "driver" | "none"
    why: str

    def to_json(self) -> dict:
        return {"value": self.value, "source": self.source, "why": self.why}


@dataclass
class BatteryReading:
    current_a: float | None  # positive = discharging
    voltage_v: float | None
    temp_c: float | None
    status: str | None  # as the kernel prints it: Discharging, Charging, Full, Not charging, Unknown
    charging: bool
    power_w: float | None  # battery output while discharging; None otherwise (battery power is not device power)
    notes: list[str] = field(default_factory=list)
    capacity_pct: float | None = None
    direction: str = "unknown"  # discharging | charging | external (battery idle on external power) | unknown
    power_from: str | None = None  # "current_now x voltage_now" | "power_now"

    def values(self) -> dict[str, float]:
        """The readings as channels: battery.current_a, battery.voltage_v, battery.power_w, battery.temp_c."""
        out = {
            "battery.current_a": self.current_a,
            "battery.voltage_v": self.voltage_v,
            "battery.power_w": self.power_w,
            "battery.temp_c": self.temp_c,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class Plan:
    """How one device's supply is read: decided once (decide), applied to every reading (read)."""

    current: Decision
    voltage: Decision
    power: Decision
    sign: Decision
    readings: int = 0

    @property
    def notes(self) -> list[str]:
        """The decisions with their source and evidence, as sensors.json notes."""
        return [
            f"current_now unit {self.current.value or 'not used'} ({self.current.source}): {self.current.why}",
            f"voltage_now unit {self.voltage.value or 'not used'} ({self.voltage.source}): {self.voltage.why}",
            f"power_now unit {self.power.value or 'not used'} ({self.power.source}): {self.power.why}",
            f"discharge sign {self.sign.value} ({self.sign.source}): {self.sign.why}",
        ]

    def to_json(self) -> dict:
        return {
            "readings": self.readings,
            "current_unit": self.current.to_json(),
            "voltage_unit": self.voltage.to_json(),
            "power_unit": self.power.to_json(),
            "discharge_sign": self.sign.to_json(),
        }

    @property
    def gives_power(self) -> bool:
        return bool((self.current.value and self.voltage.value) or self.power.value)

    def read(self, raw: dict) -> BatteryReading:
        """One reading (read_supply's dict, or a recorded one) in A, V, W, C, with this plan's units
        and sign rule. Values implausible under those units are None, with the reason in notes."""
        notes: list[str] = []
        status_text = str(raw["status"]).strip() if raw.get("status") not in (None, "") else None
        status = _status(status_text)
        voltage = _scaled(
            raw, "voltage_now", self.voltage.value, VOLTAGE_UNITS, (ABI_VOLTAGE_FLOOR_V, MAX_VOLTAGE_V), notes
        )
        voltage = None if voltage is None else abs(voltage)  # a pack's voltage has no direction
        current = _scaled(raw, "current_now", self.current.value, CURRENT_UNITS, (0.0, MAX_CURRENT_A), notes)
        power = _scaled(raw, "power_now", self.power.value, POWER_UNITS, (0.0, MAX_POWER_W), notes)
        signed = current if current is not None else power  # what carries the driver's sign

        rule = self.sign.value
        if status == DISCHARGING:
            direction = "discharging"
            if rule in DISCHARGE_SIGNS and signed and _flows_out(signed, rule) is False:
                notes.append(f"status Discharging but the current flows into the battery under sign rule {rule}")
        elif status == CHARGING:
            direction = "charging"
        elif status == FULL:
            direction = "external"
        elif rule in DISCHARGE_SIGNS and signed:
            direction = "discharging" if _flows_out(signed, rule) else "charging"
            notes.append(f"status {status_text or '(none)'}: direction {direction} from the sign under rule {rule}")
        elif signed == 0 and status == NOT_CHARGING:
            direction = "external"
        else:
            direction = "unknown"
            notes.append(
                f"status {status_text or '(none)'} with sign rule {rule}: direction unknown, power_w None"
                + ("; pin discharge_sign" if rule == "magnitude" else "")
            )

        current_a = None
        if current is not None:
            if rule in DISCHARGE_SIGNS:
                current_a = -current if rule == "negative" else current
            elif current == 0 or direction in ("discharging", "charging"):
                current_a = abs(current) if direction != "charging" else -abs(current)
            current_a = None if current_a is None else current_a + 0.0  # no -0.0

        power_w, power_from = None, None
        if direction == "discharging":
            if current is not None and voltage is not None:
                power_w, power_from = abs(current) * voltage, "current_now x voltage_now"
            elif power is not None:
                power_w, power_from = abs(power), "power_now"
            else:
                notes.append("discharging, but neither current_now with voltage_now nor power_now read: power_w None")
        elif direction == "charging":
            notes.append("charging: battery power is not device power, power_w is None")
        elif direction == "external":
            notes.append(
                f"on external power (status {status_text}): battery power is not device power, power_w is None"
            )

        temp_c = None
        t_raw, _ = _number(raw.get("temp"))
        if t_raw is not None:
            celsius = t_raw / 10.0  # tenths of a degree C (ABI)
            if TEMP_RANGE_C[0] <= celsius <= TEMP_RANGE_C[1]:
                temp_c = celsius
            else:
                notes.append(f"temp {t_raw:g} (tenths of C) -> {celsius:g} C is implausible: dropped")
        elif raw.get("temp") not in (None, ""):
            notes.append(_missing_or_bad("temp", raw))

        capacity, _ = _number(raw.get("capacity"))
        return BatteryReading(
            current_a=current_a,
            voltage_v=voltage,
            temp_c=temp_c,
            status=status_text,
            charging=direction == "charging",
            power_w=power_w,
            notes=notes,
            capacity_pct=capacity,
            direction=direction,
            power_from=power_from,
        )


def _flows_out(signed: float, rule: str) -> bool:
    return signed < 0 if rule == "negative" else signed > 0


def _scaled(raw: dict, key: str, unit: str | None, units: dict, bounds: tuple, notes: list[str]) -> float | None:
    """raw[key] in SI under the device's unit; None (with the reason) when absent, unusable or implausible."""
    value, _ = _number(raw.get(key))
    if value is None:
        if raw.get(key) not in (None, ""):
            notes.append(_missing_or_bad(key, raw))
        return None
    if unit is None:
        return None
    si = value * units[unit]
    low, high = bounds
    if not low <= abs(si) <= high:
        notes.append(f"{key} {_text(value)} {unit} is {abs(si):g} in SI, outside {low:g}..{high:g}: implausible, empty")
        return None
    return si


def _missing_or_bad(key: str, raw: dict) -> str:
    value = raw.get(key)
    if value in (None, ""):
        return f"{key} missing"
    return f"{key} {str(value)[:40]!r} is not a number: ignored"


def _check_pins(current_unit, voltage_unit, discharge_sign) -> None:
    if current_unit is not None and current_unit not in CURRENT_UNITS:
        raise AndroidBatteryError(f"current_unit must be one of {', '.join(CURRENT_UNITS)}, got {current_unit!r}")
    if voltage_unit is not None and voltage_unit not in VOLTAGE_UNITS:
        raise AndroidBatteryError(f"voltage_unit must be one of {', '.join(VOLTAGE_UNITS)}, got {voltage_unit!r}")
    if discharge_sign is not None and discharge_sign not in DISCHARGE_SIGNS:
        raise AndroidBatteryError(f"discharge_sign must be one of {', '.join(DISCHARGE_SIGNS)}, got {discharge_sign!r}")


def decide(
    readings: Iterable[dict],
    current_unit: str | None = None,
    voltage_unit: str | None = None,
    discharge_sign: str | None = None,
    driver: str | None = None,
) -> Plan:
    """The units and sign rule of one supply, decided once over a window of its readings.

    readings: read_supply dicts (text) or recorded ones (numbers), in time order, all of one supply.
    Pins (the profile's sensors.battery): current_unit uA|mA|A, voltage_unit uV|mV|V, discharge_sign
    negative|positive; driver: driver_of(folder) ('acpi' or None). Order and rules: the module
    docstring. Raises AndroidBatteryError for a pin that is not one of those.
    """
    _check_pins(current_unit, voltage_unit, discharge_sign)
    rows = list(readings)
    voltage = _decide_voltage(_column(rows, "voltage_now"), voltage_unit)
    current = _decide_flow(
        _column(rows, "current_now"), current_unit, "current_now", CURRENT_UNITS, "uA", "mA", "A", AWAKE_FLOOR_A,
        MAX_CURRENT_A, millivolt_driver=voltage.source == "evidence" and voltage.value == "mV",
    )  # fmt: skip
    power = _decide_flow(
        _column(rows, "power_now"), None, "power_now", POWER_UNITS, "uW", "mW", "W", AWAKE_FLOOR_W, MAX_POWER_W
    )
    signed = _column(rows, "current_now") if current.value else _column(rows, "power_now")
    sign = _decide_sign(signed, discharge_sign, driver, "current_now" if current.value else "power_now")
    return Plan(current=current, voltage=voltage, power=power, sign=sign, readings=len(rows))


def _column(rows: list[dict], key: str) -> list[tuple[float, bool, str]]:
    """(value, written as an integer, status) of each reading that has a number under key."""
    out = []
    for row in rows:
        value, is_int = _number(row.get(key))
        if value is not None:
            out.append((value, is_int, _status(row.get("status"))))
    return out


def _decide_voltage(column: list[tuple[float, bool, str]], pinned: str | None) -> Decision:
    if pinned is not None:
        return Decision(pinned, "profile pin", "sensors.battery.voltage_unit")
    values = [v for v, _, _ in column]
    seen = _looked_at(values)
    if not values:
        return Decision(None, "none", "no voltage_now reading")
    nonzero = [abs(v) for v in values if v != 0]
    if not nonzero:
        return Decision(None, "none", f"voltage_now reads 0 (not reported by this driver); {seen}")
    low, high = PACK_RANGE_V
    if not all(is_int for _, is_int, _ in column):
        if all(low <= v <= high for v in nonzero):
            return Decision(
                "V", "evidence", f"text with a fraction (the kernel prints integer uV) and a 1S..6S pack as V; {seen}"
            )
        return Decision(None, "none", f"text with a fraction that is no {low:g}..{high:g} V pack as V; {seen}")
    if max(nonzero) * 1e-6 >= ABI_VOLTAGE_FLOOR_V:
        return Decision("uV", "kernel ABI", f"{ABI_DOC}: voltage_now in microvolts; {seen}")
    # every reading as uV is under 0.5 V: no battery powering a running device; which unit makes it a pack?
    for unit in ("mV", "V"):
        scale = VOLTAGE_UNITS[unit]
        if all(low <= v * scale <= high for v in nonzero):
            return Decision(
                unit, "evidence",
                f"as uV (the ABI) every reading is under {ABI_VOLTAGE_FLOOR_V} V; as {unit} they are "
                f"{min(nonzero) * scale:g}..{max(nonzero) * scale:g} V, a 1S..6S pack ({low:g}..{high:g} V); {seen}",
            )  # fmt: skip
    return Decision(
        None, "none", f"as uV under {ABI_VOLTAGE_FLOOR_V} V and no {low:g}..{high:g} V pack as mV or V; {seen}"
    )


def _decide_flow(
    column: list[tuple[float, bool, str]],
    pinned: str | None,
    key: str,
    units: dict,
    abi: str,
    milli: str,
    whole: str,
    awake_floor: float,
    most: float,
    millivolt_driver: bool = False,
) -> Decision:
    """current_now (uA) or power_now (uW): pin, else the ABI unless the window says it cannot be."""
    if pinned is not None:
        return Decision(pinned, "profile pin", f"sensors.battery.{'current_unit' if key == 'current_now' else key}")
    values = [v for v, _, _ in column]
    seen = _looked_at(values)
    if not values:
        return Decision(None, "none", f"no {key} reading")
    biggest = max(abs(v) for v in values)
    if not all(is_int for _, is_int, _ in column):
        if biggest <= most:
            return Decision(whole, "evidence", f"text with a fraction (the kernel prints integer {abi}); {seen}")
        return Decision(None, "none", f"text with a fraction over {most:g} {whole}; {seen}")
    si_name = "A" if key == "current_now" else "W"
    if millivolt_driver and biggest * units[milli] <= most:
        return Decision(
            milli, "evidence",
            f"this driver writes voltage_now in mV, not the ABI's uV; its {key} as {milli} is at most "
            f"{biggest * units[milli]:g} {si_name}; {seen}",
        )  # fmt: skip
    discharging = [abs(v) for v, _, status in column if status == DISCHARGING]
    if discharging and 0 < max(discharging) * units[abi] < awake_floor and max(discharging) * units[milli] <= most:
        return Decision(
            milli, "evidence",
            f"while Discharging every reading as {abi} (the ABI) is under {awake_floor:g} {si_name}, less than a "
            f"device awake enough to run the sampler draws; as {milli} at most {max(discharging) * units[milli]:g} "
            f"{si_name}; {seen}",
        )  # fmt: skip
    if key == "current_now":
        why = f"{ABI_DOC}: current_now in microamps; pin current_unit if this driver writes mA"
    else:
        why = "power_now in microwatts, as drivers/acpi/battery.c writes it and power_supply_hwmon.c passes it on"
    return Decision(abi, "kernel ABI", f"{why}; {seen}")


def _decide_sign(column: list[tuple[float, bool, str]], pinned: str | None, driver: str | None, key: str) -> Decision:
    if pinned is not None:
        return Decision(pinned, "profile pin", "sensors.battery.discharge_sign")
    if driver == "acpi":
        return Decision(
            "magnitude", "driver",
            f"an ACPI battery ({ACPI_BATTERY_HID}): drivers/acpi/battery.c writes abs() of the rate, so the "
            "direction comes from status alone",
        )  # fmt: skip
    signs: dict[str, dict[str, int]] = {DISCHARGING: {}, CHARGING: {}}
    for value, _, status in column:
        if status in signs and value != 0:
            side = "negative" if value < 0 else "positive"
            signs[status][side] = signs[status].get(side, 0) + 1
    evidence = "; ".join(
        f"status {status.capitalize()}: " + ", ".join(f"{key} {side} in {n}" for side, n in sorted(seen.items()))
        for status, seen in signs.items()
        if seen
    )
    out, into = signs[DISCHARGING], signs[CHARGING]
    if len(out) == 1 and len(into) == 1 and set(out) == set(into):
        return Decision("magnitude", "evidence", f"the same sign while charging and discharging ({evidence})")
    if out:
        side = max(out, key=lambda s: out[s])
        if len(out) == 1 or out[side] > sum(out.values()) / 2:
            return Decision(side, "evidence", f"{key} is {side} while Discharging ({evidence})")
    elif into:
        side = max(into, key=lambda s: into[s])
        if len(into) == 1 or into[side] > sum(into.values()) / 2:
            other = "negative" if side == "positive" else "positive"
            return Decision(other, "evidence", f"{key} is {side} while Charging ({evidence})")
    why = f"{ABI_DOC}: 'Negative values are used for discharging batteries'"
    if evidence:
        why += f"; the window's statuses do not settle it ({evidence})"
    else:
        why += "; no reading with status Discharging or Charging and a nonzero current to check it against"
    return Decision("negative", "kernel ABI", why + "; pin discharge_sign if this driver differs")


def normalise(
    raw: dict,
    current_unit: str | None = None,
    voltage_unit: str | None = None,
    discharge_sign: str | None = None,
) -> BatteryReading:
    """One reading on its own (a window of one): decide() then Plan.read(); the notes hold both.

    For a device, decide once over its window and read every sample with that Plan instead.
    """
    plan = decide([raw], current_unit, voltage_unit, discharge_sign)
    reading = plan.read(raw)
    reading.notes = [*plan.notes, *reading.notes]
    return reading
