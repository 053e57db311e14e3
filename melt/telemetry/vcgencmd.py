"""Parse Raspberry Pi `vcgencmd` output (standard library only).

measure_temp -> degrees C; get_throttled -> the bit field decoded, now and since boot;
pmic_read_adc (Pi 5) -> per-rail current and voltage, per-rail power and their sum. The PMIC sum
is the power of the rails it measures, not wall power (no 5 V input current channel exists).
"""

from __future__ import annotations

import re


class VcgencmdParseError(ValueError):
    """Text that does not contain the expected vcgencmd form."""


_TEMP = re.compile(r"temp=(-?\d+(?:\.\d+)?)\s*(?:'|°|º)?C")
_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)\b")
# " VDD_CORE_A current(7)=5.03652000A"   "  EXT5V_V volt(24)=4.92450000V"
_PMIC = re.compile(
    r"^\s*(?P<name>\S+)_(?P<suffix>[AV])\s+(?P<kind>current|volt)\(\d+\)\s*="
    r"\s*(?P<value>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(?P<unit>[AV])\s*$"
)
_KIND = {"A": ("current", "current_a"), "V": ("volt", "voltage_v")}

THROTTLED_BITS = {
    "under_voltage_now": 0,
    "arm_freq_capped_now": 1,
    "throttled_now": 2,
    "soft_temp_limit_now": 3,
    "under_voltage_occurred": 16,
    "arm_freq_capped_occurred": 17,
    "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}


def _shown(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= 80 else text[:77] + "...")


def parse_measure_temp(text: str) -> float:
    """`temp=48.3'C` -> 48.3 (degrees C)."""
    m = _TEMP.search(text or "")
    if not m:
        raise VcgencmdParseError(f"measure_temp: no temp=<number>'C in {_shown(text or '')}")
    return float(m.group(1))


def parse_get_throttled(text: str) -> dict:
    """`throttled=0x50000` -> {"raw": 327680, "<flag>_now"/"<flag>_occurred": bool, "throttling_now": bool}.

    throttling_now is any of arm_freq_capped_now, throttled_now, soft_temp_limit_now (bits 1-3);
    under-voltage (bit 0) is reported on its own.
    """
    m = _THROTTLED.search(text or "")
    if not m:
        raise VcgencmdParseError(f"get_throttled: no throttled=<hex> in {_shown(text or '')}")
    raw = int(m.group(1), 0)
    out: dict = {"raw": raw}
    for name, bit in THROTTLED_BITS.items():
        out[name] = bool(raw >> bit & 1)
    out["throttling_now"] = bool(raw & 0b1110)
    return out


def parse_pmic_read_adc(text: str) -> dict:
    """Pi 5 `vcgencmd pmic_read_adc` -> rails, per-rail power and their sum.

    Returns {"rails": {name: {"current_a": float | None, "voltage_v": float | None}},
    "power_w": {name: V * I} for rails with both, "total_w": sum of power_w (None if no rail has
    both), "skipped": [lines not understood]}. Names drop the _A / _V suffix (VDD_CORE, EXT5V).
    Raises VcgencmdParseError when no line has the NAME_A current(n)=xA / NAME_V volt(n)=xV form.
    """
    rails: dict[str, dict[str, float | None]] = {}
    skipped: list[str] = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        m = _PMIC.match(line)
        if not m or _KIND[m.group("suffix")][0] != m.group("kind") or m.group("unit") != m.group("suffix"):
            skipped.append(line.strip())
            continue
        rail = rails.setdefault(m.group("name"), {"current_a": None, "voltage_v": None})
        rail[_KIND[m.group("suffix")][1]] = float(m.group("value"))
    if not rails:
        raise VcgencmdParseError(
            f"pmic_read_adc: no NAME_A current(n)=xA or NAME_V volt(n)=xV line in {_shown(text or '')}"
        )
    power = {
        name: r["voltage_v"] * r["current_a"]
        for name, r in rails.items()
        if r["voltage_v"] is not None and r["current_a"] is not None
    }
    return {
        "rails": rails,
        "power_w": power,
        "total_w": sum(power.values()) if power else None,
        "skipped": skipped,
    }
