"""Intel/AMD RAPL energy counters (powercap): cumulative energy per domain, with wrap-around."""

from __future__ import annotations

import glob
import os
import time

from melt.telemetry.base import Detection, Probe, channel_name, read_number, read_text


class RaplProbe(Probe):
    name = "rapl"

    def detect(self) -> Detection:
        d = Detection(self.name)
        self.domains: dict[str, dict] = {}
        for folder in sorted(glob.glob(self.path("/sys/class/powercap/intel-rapl:[0-9]*"))):
            if os.path.basename(folder).count(":") != 1:
                continue  # sub-domains (core, uncore) are inside their package's figure
            name = channel_name(read_text(os.path.join(folder, "name")) or os.path.basename(folder))
            uj = read_number(os.path.join(folder, "energy_uj"))
            if uj is None:
                d.missing.append(f"{folder}/energy_uj: not readable (root only on recent kernels)")
                continue
            wrap = read_number(os.path.join(folder, "max_energy_range_uj")) or 2**32
            channel = f"energy.rapl_{name}_{os.path.basename(folder).split(':')[1]}_j"
            self.domains[folder] = {"channel": channel, "last": uj, "wrap": wrap, "total_uj": 0.0}
            d.found.append(folder)
            d.channels.append(channel)
        if not self.domains and not d.missing:
            d.missing.append(f"{self.path('/sys/class/powercap')}: no RAPL domains")
        self._last_total: tuple[float, float] | None = None
        if self.domains:
            d.channels += ["energy.total_j", "power.total_w"]
            d.power_total = "power.total_w"
            d.power_method = "rapl"
            d.notes.append("energy.total_j = sum of RAPL package domains (CPU package power, not the whole machine)")
        return d

    def sample(self) -> dict[str, float]:
        values = {}
        for folder, dom in self.domains.items():
            uj = read_number(os.path.join(folder, "energy_uj"))
            if uj is None:
                continue
            delta = uj - dom["last"]
            if delta < 0:  # the counter wrapped
                delta += dom["wrap"]
            dom["total_uj"] += delta
            dom["last"] = uj
            values[dom["channel"]] = dom["total_uj"] / 1e6
        if values and len(values) == len(self.domains):
            total, now = sum(values.values()), time.monotonic()
            values["energy.total_j"] = total
            if self._last_total and now > self._last_total[1]:  # power: the counter's slope since last sample
                values["power.total_w"] = (total - self._last_total[0]) / (now - self._last_total[1])
            self._last_total = (total, now)
        return values
