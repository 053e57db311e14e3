"""Jetson INA3221 power monitors: per-rail power and the board-input total.

JetPack 5+: hwmon (`in*_label`, `in*_input` mV, `curr*_input` mA). JetPack 4: iio
(`rail_name_*`, `in_power*_input` mW). Which rail is the board input differs per board: the
profile's `sensors.power_total` when given, else a known-board table, else the sum of rails.
"""

from __future__ import annotations

import glob
import os
import re

from melt.telemetry.base import Detection, Probe, channel_name, read_number, read_text
from melt.telemetry.tegrastats import board_input_rail

IGNORED_RAILS = ("NC",)  # unconnected channels


def choose_total(rails: list[str], pinned: str | None) -> tuple[str | None, str]:
    """(rail or None for the sum, how it was chosen): the same rule as for tegrastats lines."""
    rail, method = board_input_rail(rails, pinned)
    if pinned and (rail is None or rail.upper() != pinned.upper()):
        method += f" (profile sensors.power_total = {pinned} is not among the rails {rails})"
    return rail, method


class Ina3221Probe(Probe):
    name = "ina3221"

    def _hwmon_rails(self) -> dict[str, tuple[str, str]]:
        rails = {}
        patterns = [
            "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*",
            "/sys/class/hwmon/hwmon*",
        ]
        seen = set()
        for pattern in patterns:
            for folder in sorted(glob.glob(self.path(pattern))):
                real = os.path.realpath(folder)
                if real in seen or (read_text(os.path.join(folder, "name")) or "") != "ina3221":
                    continue
                seen.add(real)
                for label_file in sorted(glob.glob(os.path.join(folder, "in*_label"))):
                    n = re.sub(r"\D", "", os.path.basename(label_file))
                    label = read_text(label_file) or ""
                    volts, amps = os.path.join(folder, f"in{n}_input"), os.path.join(folder, f"curr{n}_input")
                    if label and label.upper() not in IGNORED_RAILS and os.path.exists(volts) and os.path.exists(amps):
                        rails[label] = (volts, amps)
        return rails

    def _iio_rails(self) -> dict[str, str]:
        rails = {}
        for folder in sorted(glob.glob(self.path("/sys/bus/i2c/drivers/ina3221x/*/iio:device*"))):
            for name_file in sorted(glob.glob(os.path.join(folder, "rail_name_*"))):
                n = name_file.rsplit("_", 1)[1]
                label = read_text(name_file) or ""
                power = os.path.join(folder, f"in_power{n}_input")
                if label and label.upper() not in IGNORED_RAILS and os.path.exists(power):
                    rails[label] = power
        return rails

    def detect(self) -> Detection:
        d = Detection(self.name)
        self.hwmon = self._hwmon_rails()
        self.iio = {} if self.hwmon else self._iio_rails()
        rails = list(self.hwmon) or list(self.iio)
        if not rails:
            d.missing.append(
                f"{self.path('/sys/bus/i2c/drivers/ina3221*')}, {self.path('/sys/class/hwmon')}: no INA3221 rails"
            )
            return d
        d.found.append("hwmon (JetPack 5+)" if self.hwmon else "iio (JetPack 4)")
        self.channels = {rail: f"power.{channel_name(rail)}_w" for rail in rails}
        d.channels = list(self.channels.values())
        total, how = choose_total(rails, self.sensors.get("power_total"))
        self.total_rail = total
        d.channels.append("power.total_w")
        d.power_total = "power.total_w"
        d.power_method = "ina3221"
        d.notes.append(f"power.total_w = {self.channels[total] if total else 'sum of ' + ', '.join(rails)} ({how})")
        return d

    def sample(self) -> dict[str, float]:
        values = {}
        for rail, (volts, amps) in self.hwmon.items():
            mv, ma = read_number(volts), read_number(amps)
            if mv is not None and ma is not None:
                values[self.channels[rail]] = mv * ma / 1e6
        for rail, power in self.iio.items():
            mw = read_number(power)
            if mw is not None:
                values[self.channels[rail]] = mw / 1e3
        if self.total_rail:
            if self.channels[self.total_rail] in values:
                values["power.total_w"] = values[self.channels[self.total_rail]]
        elif len(values) == len(self.channels):
            values["power.total_w"] = sum(values.values())
        return values
