"""procfs: CPU utilisation (total and per core), memory used/available, the runtime's RSS."""

from __future__ import annotations

from melt.telemetry.base import Detection, Probe, read_text


def _cpu_times(text: str) -> dict[str, tuple[int, int]]:
    """{'cpu': (busy, total), 'cpu0': ...} from /proc/stat (iowait counts as idle)."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        try:
            values = [int(v) for v in fields[:8]]
        except ValueError:
            continue
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        out[name] = (sum(values) - idle, sum(values))
    return out


class ProcfsProbe(Probe):
    name = "procfs"

    def detect(self) -> Detection:
        d = Detection(self.name)
        stat = read_text(self.path("/proc/stat"))
        if stat:
            self._last = _cpu_times(stat)
            d.found.append(self.path("/proc/stat"))
            d.channels += [f"{name}.util_pct" for name in self._last]
        else:
            self._last = {}
            d.missing.append(f"{self.path('/proc/stat')}: not readable, no CPU utilisation")
        if read_text(self.path("/proc/meminfo")):
            d.found.append(self.path("/proc/meminfo"))
            d.channels += ["mem.used_mb", "mem.available_mb"]
        else:
            d.missing.append(f"{self.path('/proc/meminfo')}: not readable, no memory figures")
        if self.pid is not None:
            d.channels.append("proc.rss_mb")
        self.channels = d.channels
        return d

    def _status(self) -> str | None:
        # the measured process is a real one on this machine, even when the sensor root is recorded
        return read_text(self.path(f"/proc/{self.pid}/status")) or read_text(f"/proc/{self.pid}/status")

    def sample(self) -> dict[str, float]:
        values: dict[str, float] = {}
        stat = read_text(self.path("/proc/stat"))
        if stat:
            now = _cpu_times(stat)
            for name, (busy, total) in now.items():
                before = self._last.get(name)
                if before and total > before[1]:
                    values[f"{name}.util_pct"] = 100.0 * (busy - before[0]) / (total - before[1])
            self._last = now
        meminfo = read_text(self.path("/proc/meminfo"))
        if meminfo:
            kb = {}
            for line in meminfo.splitlines():
                key, _, rest = line.partition(":")
                if rest.split():
                    kb[key] = float(rest.split()[0])
            if "MemTotal" in kb and "MemAvailable" in kb:
                values["mem.used_mb"] = (kb["MemTotal"] - kb["MemAvailable"]) / 1024
                values["mem.available_mb"] = kb["MemAvailable"] / 1024
        if self.pid is not None:
            for line in (self._status() or "").splitlines():
                if line.startswith("VmRSS:"):
                    values["proc.rss_mb"] = float(line.split()[1]) / 1024
        return values
