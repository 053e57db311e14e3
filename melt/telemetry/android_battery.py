"""Android battery through /sys/class/power_supply (standard library only).

Vendors disagree on units and sign: current_now in uA (the kernel ABI) or mA, voltage_now in uV
or mV, and current negative or positive while discharging. normalise() detects each from the
magnitude and from `status`, unless the device profile pins it, and says in `notes` which it did.
Battery power is device power only while discharging: on a charger it is None.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field


class AndroidBatteryError(ValueError):
    """A supply folder that cannot be read, or a pinned unit/sign that is not one of the known ones."""


FIELDS = ("current_now", "voltage_now", "temp", "status", "capacity")

CURRENT_UNITS = {"uA": 1e-6, "mA": 1e-3, "A": 1.0}
VOLTAGE_UNITS = {"uV": 1e-6, "mV": 1e-3, "V": 1.0}
DISCHARGE_SIGNS = ("negative", "positive")

# Detection by magnitude. A phone's battery is ~3.0-4.6 V; 2.5-10 V is accepted (deeply
# discharged cells, two-cell packs) and the three voltage units land 1000x apart, so exactly one
# fits. Current spans 0.001-10 A, four decades, so the units overlap: an integer above 10000 is uA
# (10000 mA would be over 10 A); 10..10000 is mA (as uA it would be under 10 mA, not a phone that is
# running anything); a fraction up to 10 is A; an integer below 10 is ambiguous and not guessed.
VOLTAGE_RANGE_V = (2.5, 10.0)
CURRENT_UA_ABOVE = 10_000
CURRENT_MA_FROM = 10
TEMP_RANGE_C = (-40.0, 150.0)

_DISCHARGING = "discharging"
_CHARGING = "charging"
_ON_EXTERNAL_POWER = ("full", "not charging")


@dataclass
class BatteryReading:
    current_a: float | None  # positive = discharging
    voltage_v: float | None
    temp_c: float | None
    status: str | None  # as the kernel prints it: Discharging, Charging, Full, Not charging, Unknown
    charging: bool
    power_w: float | None  # |I| x V while discharging; None on a charger (battery power is not device power)
    notes: list[str] = field(default_factory=list)
    capacity_pct: float | None = None

    def values(self) -> dict[str, float]:
        """The readings as channels: battery.current_a, battery.voltage_v, battery.power_w, battery.temp_c."""
        out = {
            "battery.current_a": self.current_a,
            "battery.voltage_v": self.voltage_v,
            "battery.power_w": self.power_w,
            "battery.temp_c": self.temp_c,
        }
        return {k: v for k, v in out.items() if v is not None}


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


def find_batteries(root: str = "/") -> list[str]:
    """Supply folders under <root>/sys/class/power_supply whose type is Battery, sorted.

    Found by type, not by name (bms, battery, max170xx_battery...); `type` file first, else the
    POWER_SUPPLY_TYPE of uevent.
    """
    base = os.path.join(root, "sys", "class", "power_supply")
    try:
        names = os.listdir(base)
    except OSError:
        return []
    found = []
    for name in names:
        folder = os.path.join(base, name)
        kind = _read(os.path.join(folder, "type"))
        if kind is None:
            kind = _uevent(folder).get("type")
        if (kind or "").strip().lower() == "battery":
            found.append(folder)
    return sorted(found)


def read_supply(path: str) -> dict:
    """Raw values (text as read) of current_now, voltage_now, temp, status, capacity.

    Individual files first; uevent (POWER_SUPPLY_*) fills the ones missing. Keys with no value
    anywhere are absent. Raises AndroidBatteryError if path is not a folder.
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


def _number(value) -> tuple[float | None, bool]:
    """(value, is_integer_text). Accepts int, float, or text."""
    if value is None or isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return float(value), True
    if isinstance(value, float):
        return (value, False) if math.isfinite(value) else (None, False)
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


def _current_scale(raw: float, is_int: bool, pinned: str | None, notes: list[str]) -> float | None:
    if pinned is not None:
        notes.append(f"current unit {pinned} pinned by profile")
        return CURRENT_UNITS[pinned]
    mag = abs(raw)
    if mag == 0:
        notes.append("current_now is 0: unit not needed")
        return 1.0
    if not is_int and mag <= CURRENT_MA_FROM:
        notes.append(f"current unit A detected ({raw:g} has a fraction and is at most {CURRENT_MA_FROM})")
        return 1.0
    if mag > CURRENT_UA_ABOVE:
        notes.append(f"current unit uA detected (|{raw:g}| > {CURRENT_UA_ABOVE}: over 10 A if it were mA)")
        return 1e-6
    if mag >= CURRENT_MA_FROM:
        notes.append(
            f"current unit mA detected ({CURRENT_MA_FROM} <= |{raw:g}| <= {CURRENT_UA_ABOVE}: under 10 mA if it "
            "were uA); pin current_unit in the profile if wrong"
        )
        return 1e-3
    notes.append(f"current unit not detected: |{raw:g}| < {CURRENT_MA_FROM} could be mA or A; pin current_unit")
    return None


def _voltage_scale(raw: float, pinned: str | None, notes: list[str]) -> float | None:
    if pinned is not None:
        notes.append(f"voltage unit {pinned} pinned by profile")
        return VOLTAGE_UNITS[pinned]
    low, high = VOLTAGE_RANGE_V
    for unit, scale in VOLTAGE_UNITS.items():
        if low <= abs(raw) * scale <= high:
            notes.append(f"voltage unit {unit} detected ({raw:g} -> {abs(raw) * scale:g} V)")
            return scale
    notes.append(f"voltage unit not detected: {raw:g} is {low}-{high} V in none of uV, mV, V; pin voltage_unit")
    return None


def _discharge_sign(raw: float, status: str, pinned: str | None, notes: list[str]) -> str | None:
    """'negative' if the driver reports discharge as negative current, 'positive' if positive."""
    if pinned is not None:
        notes.append(f"discharge sign {pinned} pinned by profile")
        return pinned
    if raw != 0 and status in (_DISCHARGING, _CHARGING):
        discharging = status == _DISCHARGING
        sign = "negative" if (raw < 0) == discharging else "positive"
        notes.append(f"discharge sign {sign} detected from status {status.capitalize()} and current {raw:g}")
        return sign
    return None


def normalise(
    raw: dict,
    current_unit: str | None = None,
    voltage_unit: str | None = None,
    discharge_sign: str | None = None,
) -> BatteryReading:
    """Raw supply values (read_supply, or a recorded dict) -> BatteryReading in A, V, C, W.

    Pins (from the device profile) override detection: current_unit uA|mA|A, voltage_unit
    uV|mV|V, discharge_sign negative|positive. Values that cannot be read or placed are None,
    with the reason in notes; nothing is guessed.
    """
    if current_unit is not None and current_unit not in CURRENT_UNITS:
        raise AndroidBatteryError(f"current_unit must be one of {', '.join(CURRENT_UNITS)}, got {current_unit!r}")
    if voltage_unit is not None and voltage_unit not in VOLTAGE_UNITS:
        raise AndroidBatteryError(f"voltage_unit must be one of {', '.join(VOLTAGE_UNITS)}, got {voltage_unit!r}")
    if discharge_sign is not None and discharge_sign not in DISCHARGE_SIGNS:
        raise AndroidBatteryError(f"discharge_sign must be one of {', '.join(DISCHARGE_SIGNS)}, got {discharge_sign!r}")
    notes: list[str] = []
    status_text = raw.get("status")
    status_text = str(status_text).strip() if status_text not in (None, "") else None
    status = (status_text or "").lower()

    # voltage
    voltage_v = None
    v_raw, _ = _number(raw.get("voltage_now"))
    if v_raw is None:
        notes.append(_missing_or_bad("voltage_now", raw))
    else:
        scale = _voltage_scale(v_raw, voltage_unit, notes)
        voltage_v = abs(v_raw) * scale if scale is not None else None

    # current, as positive = discharging
    current_a = None
    i_raw, i_is_int = _number(raw.get("current_now"))
    if i_raw is None:
        notes.append(_missing_or_bad("current_now", raw))
    else:
        scale = _current_scale(i_raw, i_is_int, current_unit, notes)
        if scale is not None:
            amps = i_raw * scale
            sign = _discharge_sign(i_raw, status, discharge_sign, notes)
            if sign is None and i_raw != 0:
                sign = "negative"
                notes.append(
                    f"discharge sign not detectable from status {status_text or '(none)'}: assumed negative "
                    "(kernel convention); pin discharge_sign"
                )
            current_a = -amps if sign == "negative" else amps
            current_a = current_a + 0.0  # no -0.0

    # direction: from status; with no usable status only a pinned sign tells
    if status == _CHARGING:
        charging, discharging = True, False
        notes.append("charging (status Charging): battery power is not device power, power_w is None")
    elif status == _DISCHARGING:
        charging, discharging = False, True
    elif status in _ON_EXTERNAL_POWER:
        charging, discharging = False, False
        notes.append(f"on external power (status {status_text}): battery power is not device power, power_w is None")
    elif discharge_sign is not None and current_a is not None:
        charging, discharging = current_a < 0, current_a > 0
        notes.append(f"status {status_text or '(none)'}: direction taken from the pinned discharge sign")
    else:
        charging, discharging = False, False
        notes.append(f"status {status_text or '(none)'} and no pinned discharge_sign: direction unknown, power_w None")

    if discharging and current_a is not None and current_a < 0:
        notes.append("status Discharging but the current flows into the battery under the pinned sign")

    power_w = abs(current_a) * voltage_v if discharging and current_a is not None and voltage_v is not None else None

    # temperature: tenths of a degree C
    temp_c = None
    t_raw, _ = _number(raw.get("temp"))
    if t_raw is not None:
        celsius = t_raw / 10.0
        if TEMP_RANGE_C[0] <= celsius <= TEMP_RANGE_C[1]:
            temp_c = celsius
        else:
            notes.append(f"temp {t_raw:g} (tenths of C) -> {celsius:g} C is implausible: dropped")
    elif raw.get("temp") not in (None, ""):
        notes.append(_missing_or_bad("temp", raw))

    capacity, _ = _number(raw.get("capacity"))
    return BatteryReading(
        current_a=current_a,
        voltage_v=voltage_v,
        temp_c=temp_c,
        status=status_text,
        charging=charging,
        power_w=power_w,
        notes=notes,
        capacity_pct=capacity,
    )


def _missing_or_bad(key: str, raw: dict) -> str:
    value = raw.get(key)
    if value in (None, ""):
        return f"{key} missing"
    return f"{key} {str(value)[:40]!r} is not a number: ignored"
