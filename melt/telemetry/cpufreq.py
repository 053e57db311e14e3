"""cpufreq: current and maximum frequency per policy, named after the policy's first CPU."""

from __future__ import annotations

import glob
import os
import re

from melt.telemetry.base import Detection, Probe, read_number


class CpufreqProbe(Probe):
    name = "cpufreq"

    def detect(self) -> Detection:
        d = Detection(self.name)
        self.policies: dict[str, str] = {}
        for folder in sorted(glob.glob(self.path("/sys/devices/system/cpu/cpufreq/policy*"))):
            n = re.sub(r"\D", "", os.path.basename(folder))
            self.policies[f"cpu{n}"] = folder
        if not self.policies:  # older kernels: one cpufreq folder per CPU
            for folder in sorted(glob.glob(self.path("/sys/devices/system/cpu/cpu[0-9]*/cpufreq"))):
                n = re.sub(r"\D", "", os.path.basename(os.path.dirname(folder)))
                self.policies[f"cpu{n}"] = folder
        for cpu, folder in list(self.policies.items()):
            if read_number(os.path.join(folder, "scaling_cur_freq")) is None:
                d.missing.append(f"{folder}/scaling_cur_freq: not readable")
                del self.policies[cpu]
                continue
            d.found.append(folder)
            d.channels += [f"{cpu}.freq_mhz", f"{cpu}.max_freq_mhz"]
        if not self.policies:
            d.missing.append(
                f"{self.path('/sys/devices/system/cpu/cpufreq')}: no cpufreq policies (a VM, or no driver)"
            )
        return d

    def sample(self) -> dict[str, float]:
        values = {}
        for cpu, folder in self.policies.items():
            cur = read_number(os.path.join(folder, "scaling_cur_freq"))
            top = read_number(os.path.join(folder, "scaling_max_freq")) or read_number(
                os.path.join(folder, "cpuinfo_max_freq")
            )
            if cur is not None:
                values[f"{cpu}.freq_mhz"] = cur / 1000  # kHz in sysfs
            if top is not None:
                values[f"{cpu}.max_freq_mhz"] = top / 1000
        return values
