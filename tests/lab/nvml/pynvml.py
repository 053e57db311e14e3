"""Stand-in for nvidia-ml-py's `pynvml`, for the tests that need a GPU where none can exist (NVML needs
NVIDIA's driver). The "no driver" path is tested with the real nvidia-ml-py; this answers only the calls
melt's NVML probe makes, in NVML's own units (power mW, energy mJ since driver load, clocks MHz, %).

Constructed, not recorded: one GPU (an H100's name) that steps between a load phase (312.5 W, 61 C, SM
1755 MHz, 97 %, software thermal slowdown set) and an idle one (95 W, 45 C, 345 MHz, 0 %, idle) on a cycle
of LOAD_S + IDLE_S, starting in the load phase at t0. Its total-energy counter is the integral of that
power over time, as NVML's is: it advances with time, not with reads.

Set by the environment, so that the sampler process melt starts (which imports this) and the test agree:
- MELT_FAKE_NVML_T0: t0 on time.monotonic()'s clock (default: when this module is imported);
- MELT_FAKE_NVML_COUNTER_SCALE: the counter reads this times the true energy (default 1): a counter that
  disagrees with the integral of the power the same GPU reports, for melt's cross-check to show;
- MELT_FAKE_NVML_LOG: a file to which each power and counter read appends `power|energy <t>` (seconds
  since t0), so that a test knows when each reading was taken, not only when the sampler stamped it.
"""

from __future__ import annotations

import os
import time

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2

T0 = float(os.environ.get("MELT_FAKE_NVML_T0") or time.monotonic())
COUNTER_SCALE = float(os.environ.get("MELT_FAKE_NVML_COUNTER_SCALE") or 1.0)
LOG = os.environ.get("MELT_FAKE_NVML_LOG")
COUNTER_AT_T0_MJ = 123_456_000  # energy since the driver loaded, before t0
LOAD_S, IDLE_S = 0.9, 0.6
LOAD_MW, IDLE_MW = 312_500, 95_000
# phase -> temperature C, SM MHz, memory MHz, GPU %, memory %, clocks-event-reasons mask
LOAD = (61, 1755, 2619, 97, 40, 0x20)  # software thermal slowdown
IDLE = (45, 345, 2619, 0, 0, 0x1)  # GPU idle


def in_load(t: float) -> bool:
    """Whether the GPU is in its load phase t seconds after t0."""
    return (t % (LOAD_S + IDLE_S)) < LOAD_S


def power_mw(t: float) -> int:
    return LOAD_MW if in_load(t) else IDLE_MW


def energy_mj(t: float) -> float:
    """The exact integral of power_mw over [0, t] (mJ): whole cycles, then the part of the last one."""
    cycles, rest = divmod(max(t, 0.0), LOAD_S + IDLE_S)
    return (
        cycles * (LOAD_MW * LOAD_S + IDLE_MW * IDLE_S) + LOAD_MW * min(rest, LOAD_S) + IDLE_MW * max(rest - LOAD_S, 0.0)
    )


def _now() -> float:
    return time.monotonic() - T0


def _read(what: str) -> float:
    t = _now()
    if LOG:
        with open(LOG, "a") as f:
            f.write(f"{what} {t:.6f}\n")
    return t


def _state() -> tuple:
    return LOAD if in_load(_now()) else IDLE


class _Util:
    def __init__(self, gpu: int, memory: int):
        self.gpu, self.memory = gpu, memory


def nvmlInit():
    pass


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    return 1


def nvmlDeviceGetHandleByIndex(i):
    return ("gpu", i)


def nvmlDeviceGetName(handle):
    return "NVIDIA H100 80GB HBM3"


def nvmlDeviceGetPowerUsage(handle):
    return power_mw(_read("power"))  # mW


def nvmlDeviceGetTotalEnergyConsumption(handle):
    return int(COUNTER_AT_T0_MJ + COUNTER_SCALE * energy_mj(_read("energy")))  # mJ since the driver loaded


def nvmlDeviceGetTemperature(handle, sensor):
    return _state()[0]


def nvmlDeviceGetClockInfo(handle, clock):
    return {NVML_CLOCK_SM: _state()[1], NVML_CLOCK_MEM: _state()[2]}[clock]


def nvmlDeviceGetUtilizationRates(handle):
    return _Util(_state()[3], _state()[4])


def nvmlDeviceGetCurrentClocksEventReasons(handle):
    return _state()[5]
