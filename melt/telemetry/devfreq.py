"""GPU load and frequency through devfreq (Jetson: gpu.0/load in tenths of a percent)."""

from __future__ import annotations

import glob
import os

from melt.telemetry.base import Detection, Probe, read_number

GPU_NAMES = ("gpu", "ga10b", "gv11b", "gp10b", "gk20a", "gm20b", "mali", "adreno", "kgsl")


class DevfreqProbe(Probe):
    name = "devfreq"

    def detect(self) -> Detection:
        d = Detection(self.name)
        self.freq_file = self.load_file = None
        for folder in sorted(glob.glob(self.path("/sys/class/devfreq/*"))):
            is_gpu = any(n in os.path.basename(folder).lower() for n in GPU_NAMES)
            if is_gpu and read_number(os.path.join(folder, "cur_freq")) is not None:
                self.freq_file = os.path.join(folder, "cur_freq")
                d.found.append(folder)
                load = os.path.join(folder, "device", "load")
                if read_number(load) is not None:
                    self.load_file = load
                break
        if self.load_file is None:
            for candidate in ("/sys/devices/gpu.0/load", "/sys/devices/platform/gpu.0/load"):
                if read_number(self.path(candidate)) is not None:
                    self.load_file = self.path(candidate)
                    break
        if self.freq_file:
            d.channels.append("gpu.freq_mhz")
        if self.load_file:
            d.channels.append("gpu.util_pct")
            d.found.append(self.load_file)
        if not d.channels:
            d.missing.append(f"{self.path('/sys/class/devfreq')}: no GPU devfreq device")
        return d

    def sample(self) -> dict[str, float]:
        values = {}
        if self.freq_file and (hz := read_number(self.freq_file)) is not None:
            values["gpu.freq_mhz"] = hz / 1e6
        if self.load_file and (load := read_number(self.load_file)) is not None:
            values["gpu.util_pct"] = load / 10  # 0..1000
        return values
