"""How many threads llama.cpp's own tools use when none is given: common_cpu_get_num_math().

The C library's default (llama_context_default_params: GGML_DEFAULT_N_THREADS, 4, marked "TODO: better
default") is a placeholder every llama.cpp tool overrides: llama-bench's default -t is
common_cpu_get_num_math(), and llama-cli / llama-completion resolve their -1 to it (common/common.cpp).
This is that rule, in the standard library (common/common.cpp, llama.cpp 0c1e570 as vendored by
llama-cpp-python 0.3.36):

- physical cores (common_cpu_get_num_physical_cores): on Linux the number of distinct
  /sys/devices/system/cpu/cpuN/topology/thread_siblings masks, N counted up from 0 until a file is missing;
  on macOS sysctl hw.perflevel0.physicalcpu, else hw.physicalcpu; elsewhere, or when those give nothing,
  the logical CPUs when there are at most 4, else half of them (4 when unknown);
- math CPUs (common_cpu_get_num_math): on x86-64 Linux with a hybrid CPU (Intel P- and E-cores) llama.cpp
  pins itself to each CPU and asks CPUID whether it is an efficiency core, counting one thread per
  performance core. Python cannot run CPUID; the kernel lists the performance cores' CPUs in
  /sys/devices/cpu_core/cpus (perf's hybrid PMU, Linux 5.13+), and the distinct thread_siblings among
  them are the same count. Without that file the CPU is not hybrid (or the kernel does not say) and the
  count is the physical cores'. On 64-bit PowerPC: physical cores x min(SMT ways, 2).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

SYS_CPU = "sys/devices/system/cpu"
HYBRID_CORES = "sys/devices/cpu_core/cpus"


def _read(root: str, rel: str) -> str | None:
    try:
        with open(os.path.join(root, rel), encoding="ascii") as f:
            return f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpu_list(text: str) -> list[int]:
    """A kernel CPU list ("0-3,8,10-11", Documentation/admin-guide/cputopology.rst) as numbers."""
    cpus = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def _siblings(root: str, cpus) -> set[str]:
    found = set()
    for cpu in cpus:
        mask = _read(root, f"{SYS_CPU}/cpu{cpu}/topology/thread_siblings")
        if mask is None:
            break  # llama.cpp stops at the first CPU without the file
        found.add(mask)
    return found


def _fallback(n_logical: int | None) -> int:
    if not n_logical:
        return 4
    return n_logical if n_logical <= 4 else n_logical // 2


def _sysctl_int(name: str) -> int | None:
    try:
        libc = ctypes.CDLL(None)
        value, size = ctypes.c_int32(0), ctypes.c_size_t(4)
        if libc.sysctlbyname(name.encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)) == 0:
            return value.value
    except (OSError, AttributeError):
        pass
    return None


def physical_cores(root: str = "/", system: str | None = None, n_logical: int | None = None) -> int:
    """common_cpu_get_num_physical_cores() (see the module docstring). root: where sysfs is read (a recorded
    tree in tests); system: platform.system() unless given; n_logical: os.cpu_count() unless given."""
    system = system or platform.system()
    if system == "Linux":
        found = _siblings(root, range(1 << 16))
        if found:
            return len(found)
    elif system == "Darwin":
        for name in ("hw.perflevel0.physicalcpu", "hw.physicalcpu"):
            n = _sysctl_int(name)
            if n:
                return n
    return _fallback(os.cpu_count() if n_logical is None else n_logical)


def math_cpus(
    root: str = "/", system: str | None = None, machine: str | None = None, n_logical: int | None = None
) -> int:
    """common_cpu_get_num_math(): the thread count llama.cpp's tools default to (see the module docstring).
    Arguments as physical_cores; machine: platform.machine() unless given."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    n_logical = os.cpu_count() if n_logical is None else n_logical
    if system == "Linux" and machine in ("x86_64", "amd64") and not hasattr(sys, "getandroidapilevel"):
        cores = _read(root, HYBRID_CORES)
        if cores:
            try:
                performance = _siblings(root, _cpu_list(cores))
            except ValueError:
                performance = set()
            if performance:
                return len(performance)
    elif machine.startswith(("ppc", "powerpc")):
        physical = physical_cores(root, system, n_logical)
        smt = n_logical // physical if n_logical and physical and n_logical > physical else 1
        return physical * min(smt, 2)
    return physical_cores(root, system, n_logical)
