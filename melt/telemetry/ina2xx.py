"""Power monitors of the TI INA2xx family in sysfs: per-rail power, in W.

hwmon (JetPack 5+, and any Linux board with such a monitor) follows the hwmon sysfs ABI
(Documentation/hwmon/sysfs-interface.rst): `in*_input` mV, `curr*_input` mA, `power*_input` uW.
Which voltage goes with which current differs per driver (Documentation/hwmon/<driver>.rst):

- ina3221: channels 1-3, `in[123]_input` bus mV x `curr[123]_input` mA, `in[123]_label`; in4-6
  are shunt voltages (uV) and in7 / curr4 their sums, never paired;
- ina2xx (ina219, ina220, ina226, ina230, ina231, ina260, sy24655), ina209 and ina238 (ina228,
  ina237, ina238, ina700, ina780, sq52206): channel 1, `power1_input` uW where the chip computes it,
  else `in1_input` bus mV x `curr1_input` mA (in0 is the shunt voltage).

A channel is named by its label (`in*_label`, `curr*_label`, `power*_label`, else the hwmon
device's `label`); a monitor with no label at all (Jetson AGX Thor's INA238) is named by chip and
I2C address ("ina238 1-0040") and marked unlabelled, so the board table can say what it measures.
JetPack 4 exposes the INA3221 through iio instead: `rail_name_N`, `in_power{N}_input` mW (else
`in_voltage{N}_input` mV x `in_current{N}_input` mA).

This probe reports rails only; which one is total power is decided in power_rails.py.
"""

from __future__ import annotations

import glob
import os

from melt.telemetry.base import Detection, Probe, channel_name, read_number, read_text

# hwmon chip name -> the channel indexes whose bus voltage and current belong together
PAIRED_CHANNELS = {
    "ina3221": (1, 2, 3),
    **dict.fromkeys(("ina209", "ina219", "ina220", "ina226", "ina230", "ina231", "ina260", "sy24655"), (1,)),
    **dict.fromkeys(("ina228", "ina237", "ina238", "ina700", "ina780", "sq52206"), (1,)),
}
IGNORED_LABELS = ("NC",)  # unconnected channels
HWMON_GLOBS = ("/sys/class/hwmon/hwmon*", "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")
IIO_GLOB = "/sys/bus/i2c/drivers/ina3221x/*/iio:device*"


class Ina2xxProbe(Probe):
    name = "ina2xx"

    def _read_w(self, source: tuple) -> float | None:
        kind, *paths = source
        if kind == "uW":
            uw = read_number(paths[0])
            return None if uw is None else uw / 1e6
        if kind == "mW":
            mw = read_number(paths[0])
            return None if mw is None else mw / 1e3
        mv, ma = read_number(paths[0]), read_number(paths[1])  # "mV*mA"
        return None if mv is None or ma is None else mv * ma / 1e6

    def _hwmon(self, d: Detection) -> list[dict]:
        rails, seen = [], set()
        for pattern in HWMON_GLOBS:
            for folder in sorted(glob.glob(self.path(pattern))):
                real = os.path.realpath(folder)
                chip = (read_text(os.path.join(folder, "name")) or "").strip().lower()
                if real in seen or chip not in PAIRED_CHANNELS:
                    continue
                seen.add(real)
                device = os.path.basename(os.path.realpath(os.path.join(folder, "device")))
                device_label = read_text(os.path.join(folder, "label"))
                for n in PAIRED_CHANNELS[chip]:
                    f = {k: os.path.join(folder, f"{k}{n}_{s}") for k, s in
                         (("in", "input"), ("curr", "input"), ("power", "input"))}  # fmt: skip
                    label = next(
                        (t for k in ("in", "curr", "power") if (t := read_text(os.path.join(folder, f"{k}{n}_label")))),
                        device_label if len(PAIRED_CHANNELS[chip]) == 1 else None,
                    )
                    if label and label.upper() in IGNORED_LABELS:
                        continue
                    if chip == "ina3221" and not label:
                        continue  # the driver shows no label for a channel with nothing wired to it
                    if os.path.exists(f["power"]):
                        source = ("uW", f["power"])
                    elif os.path.exists(f["in"]) and os.path.exists(f["curr"]):
                        source = ("mV*mA", f["in"], f["curr"])
                    else:
                        d.missing.append(f"{folder}: {chip} channel {n} has no power{n}_input, nor in{n} and curr{n}")
                        continue
                    labelled = bool(label)
                    label = label or f"{chip} {device}"
                    rails.append({"label": label, "labelled": labelled, "chip": chip, "source": source,
                                  "where": f"{folder} ({chip} {device})"})  # fmt: skip
        return rails

    def _iio(self) -> list[dict]:
        rails = []
        for folder in sorted(glob.glob(self.path(IIO_GLOB))):
            for name_file in sorted(glob.glob(os.path.join(folder, "rail_name_*"))):
                n = name_file.rsplit("_", 1)[1]
                label = read_text(name_file) or ""
                power = os.path.join(folder, f"in_power{n}_input")
                volts, amps = os.path.join(folder, f"in_voltage{n}_input"), os.path.join(folder, f"in_current{n}_input")
                if not label or label.upper() in IGNORED_LABELS:
                    continue
                if os.path.exists(power):
                    source = ("mW", power)
                elif os.path.exists(volts) and os.path.exists(amps):
                    source = ("mV*mA", volts, amps)
                else:
                    continue
                rails.append({"label": label, "labelled": True, "chip": "ina3221", "source": source,
                              "where": f"{folder} (iio, JetPack 4)"})  # fmt: skip
        return rails

    def detect(self) -> Detection:
        d = Detection(self.name)
        found = self._hwmon(d) + self._iio()
        if not found:
            d.missing.append(f"{self.path('/sys/class/hwmon')}, {self.path(IIO_GLOB)}: no INA2xx power monitor")
            return d
        self.rails: dict[str, tuple] = {}
        for rail in found:
            channel = f"power.{channel_name(rail['label'])}_w"
            if channel in self.rails:
                channel = f"power.{channel_name(rail['label'] + ' ' + rail['where'].split('(')[-1])}_w"
            self.rails[channel] = rail["source"]
            d.channels.append(channel)
            d.rails.append({"channel": channel, "label": rail["label"], "labelled": rail["labelled"],
                            "chip": rail["chip"], "method": rail["chip"], "probe": self.name})  # fmt: skip
            d.found.append(f"{rail['label']}: {rail['where']}, {rail['source'][0]}")
        return d

    def sample(self) -> dict[str, float]:
        values = {}
        for channel, source in self.rails.items():
            watts = self._read_w(source)
            if watts is not None:
                values[channel] = watts
        return values
