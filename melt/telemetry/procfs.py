"""procfs: CPU utilisation (total and per core), memory used/available, the runtime's RSS, and the
CPU-time counters that tell whether other processes shared the machine with the measured one.

Counters, in seconds since the sampler started (proc(5): /proc/stat fields are in USER_HZ ticks, as
are utime/stime/cutime/cstime of /proc/PID/stat):
- `cpu.busy_s`: time all CPUs spent running anything: user + nice + system + irq + softirq (guest
  time is already inside user; steal is not time this machine ran);
- `cpu.steal_s`: time the hypervisor gave this machine's CPUs to someone else (VMs; 0 elsewhere);
- `cpu.total_s`: every field but guest, so that steal / total is the share `top` shows as %st;
- `proc.cpu_s`: the measured process's utime + stime + cutime + cstime (its threads, and children
  it has waited for).
Foreign CPU time over a window is then busy - proc - the sampler's own (sampler.cpu_s): analysis
does that (melt/analysis/busy.py). The measured process is read under the same root as /proc/stat,
so a recorded tree's /proc/stat is never set against a live process.
"""

from __future__ import annotations

import os

from melt.telemetry.base import Detection, Probe, read_text

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_lines(text: str) -> dict[str, list[int]]:
    """The `cpu` and `cpuN` lines of /proc/stat: name -> the first eight fields (proc(5): user nice system
    idle iowait irq softirq steal; guest and guest_nice are already inside user and nice), zero-padded
    for kernels that print fewer (no steal before 2.6.11). A line that does not read is left out."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        try:
            values = [int(v) for v in fields[:8]]
        except ValueError:
            continue
        out[name] = values + [0] * (8 - len(values))
    return out


def stat_counters(text: str, lines: dict[str, list[int]] | None = None) -> tuple[int, int, int] | None:
    """(busy, steal, total) ticks of the aggregate `cpu` line of /proc/stat; None when it is not there.
    busy is user + nice + system + irq + softirq: time this machine ran something (steal it did not)."""
    v = (lines if lines is not None else cpu_lines(text)).get("cpu")
    if v is None:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, steal, sum(v)


def process_cpu_ticks(text: str) -> int | None:
    """utime + stime + cutime + cstime of one /proc/PID/stat line (fields 14-17 of proc(5)); the fields
    are counted after the last ')' because the command name may hold spaces and parentheses."""
    rest = text.rpartition(")")[2].split()
    try:
        return sum(int(x) for x in rest[11:15]) if len(rest) >= 15 else None
    except ValueError:
        return None


def _cpu_times(lines: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    """{'cpu': (busy, total), 'cpu0': ...} for utilisation (iowait counts as idle)."""
    return {name: (sum(v) - v[3] - v[4], sum(v)) for name, v in lines.items()}


class ProcfsProbe(Probe):
    name = "procfs"

    def detect(self) -> Detection:
        d = Detection(self.name)
        stat = read_text(self.path("/proc/stat"))
        if stat:
            self._last = _cpu_times(cpu_lines(stat))
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
        self._zero = self._counters()
        if self._zero.get("busy") is not None:
            d.channels += ["cpu.busy_s", "cpu.steal_s", "cpu.total_s"]
        if self._zero.get("proc") is not None:
            d.channels.append("proc.cpu_s")
        elif self.pid is not None:
            d.missing.append(
                f"{self.path(f'/proc/{self.pid}/stat')}: the measured process is not under the sensor root, "
                "so CPU time used by other processes cannot be told apart"
            )
        self.channels = d.channels
        return d

    def _counters(self, lines: dict[str, list[int]] | None = None) -> dict[str, int | None]:
        if lines is None:
            lines = cpu_lines(read_text(self.path("/proc/stat")) or "")
        stat = stat_counters("", lines)
        proc = process_cpu_ticks(read_text(self.path(f"/proc/{self.pid}/stat")) or "") if self.pid else None
        busy, steal, total = stat or (None, None, None)
        return {"busy": busy, "steal": steal, "total": total, "proc": proc}

    def _status(self) -> str | None:
        # the measured process is a real one on this machine, even when the sensor root is recorded
        return read_text(self.path(f"/proc/{self.pid}/status")) or read_text(f"/proc/{self.pid}/status")

    def sample(self) -> dict[str, float]:
        values: dict[str, float] = {}
        stat = read_text(self.path("/proc/stat"))
        lines = cpu_lines(stat or "")  # read and parsed once per tick: utilisation and counters both
        if stat:
            now = _cpu_times(lines)
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
        now = self._counters(lines)
        for key, channel in (("busy", "cpu.busy_s"), ("steal", "cpu.steal_s"), ("total", "cpu.total_s"),
                             ("proc", "proc.cpu_s")):  # fmt: skip
            if now[key] is not None and self._zero.get(key) is not None:
                values[channel] = (now[key] - self._zero[key]) / USER_HZ
        return values
