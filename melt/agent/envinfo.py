"""Small collectors of machine facts; each reads one file or call and skips quietly when missing.

Paths are read under a root so a recorded sysfs/procfs tree can stand in for a board.
"""

from __future__ import annotations

import glob
import os
import platform
import sys


def _read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path.lstrip("/")), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def cpuinfo(root: str = "/") -> str:
    """/proc/cpuinfo under root; empty when unreadable."""
    return _read(root, "/proc/cpuinfo") or ""


def cpu_model(root: str = "/") -> str | None:
    text = cpuinfo(root)
    for key in ("model name", "Hardware", "Model", "cpu model", "Processor"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


def governors(root: str = "/") -> list[str]:
    found = set()
    for path in glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")):
        try:
            with open(path) as f:
                found.add(f.read().strip())
        except OSError:
            pass
    return sorted(found)


def cpu_max_freq_mhz(root: str = "/") -> float | None:
    values = []
    for path in glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq")):
        try:
            with open(path) as f:
                values.append(int(f.read().strip()) / 1000)
        except (OSError, ValueError):
            pass
    return max(values) if values else None


def mem_total_mb(root: str = "/") -> float | None:
    for line in (_read(root, "/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return None


def os_release(root: str = "/") -> str | None:
    for line in (_read(root, "/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def collect(root: str = "/") -> dict:
    """Facts about the machine this process runs on."""
    uname = platform.uname()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "hostname": uname.node,
        "system": uname.system,
        "kernel": uname.release,
        "kernel_version": uname.version,
        "machine": uname.machine,
        "os": os_release(root),
        "cpu_model": cpu_model(root),
        "cpu_count": os.cpu_count(),
        "cpu_affinity_count": affinity,
        "cpu_governors": governors(root),
        "cpu_max_freq_mhz": cpu_max_freq_mhz(root),
        "mem_total_mb": mem_total_mb(root),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
    }
