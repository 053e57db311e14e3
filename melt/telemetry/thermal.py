"""Thermal zones: type and temperature; offline zones (-256 C) and absurd readings are dropped."""

from __future__ import annotations

import glob
import os

from melt.telemetry.base import Detection, Probe, channel_name, read_number, read_text

PLAUSIBLE_C = (-40.0, 150.0)
# zones that print a fixed value instead of a reading: Jetson's PMIC-Die zone reads 100 C always (the
# PMIC has only an over-temperature alarm; tegrastats prints it as PMIC@100C, jetson_stats drops it)
PLACEHOLDER_C = {"pmic-die": 100.0, "pmic": 100.0}


def plausible(celsius: float | None) -> bool:
    return celsius is not None and PLAUSIBLE_C[0] <= celsius <= PLAUSIBLE_C[1]


class ThermalProbe(Probe):
    name = "thermal"

    def detect(self) -> Detection:
        d = Detection(self.name)
        self.zones: dict[str, str] = {}
        for folder in sorted(glob.glob(self.path("/sys/class/thermal/thermal_zone*")), key=_zone_number):
            kind = read_text(os.path.join(folder, "type")) or os.path.basename(folder)
            celsius = _millideg(read_number(os.path.join(folder, "temp")))
            if not plausible(celsius):
                d.missing.append(f"{folder} ({kind}): reads {celsius} C, offline or absurd: dropped")
                continue
            if PLACEHOLDER_C.get(kind.strip().lower()) == celsius:
                d.missing.append(
                    f"{folder} ({kind}): reads a fixed {celsius:g} C placeholder, not a temperature: dropped"
                )
                continue
            channel = f"temp.{channel_name(kind)}_c"
            if channel in self.zones.values():
                channel = f"temp.{channel_name(kind)}_{_zone_number(folder)}_c"
            self.zones[folder] = channel
            d.found.append(folder)
            d.channels.append(channel)
        if not self.zones and not d.missing:
            d.missing.append(f"{self.path('/sys/class/thermal')}: no thermal zones")
        return d

    def sample(self) -> dict[str, float]:
        values = {}
        for folder, channel in self.zones.items():
            celsius = _millideg(read_number(os.path.join(folder, "temp")))
            if plausible(celsius):
                values[channel] = celsius
        return values


def _millideg(value: float | None) -> float | None:
    return None if value is None else value / 1000  # the thermal sysfs ABI: millidegrees Celsius


def _zone_number(folder: str) -> int:
    digits = "".join(c for c in os.path.basename(folder) if c.isdigit())
    return int(digits) if digits else 0
