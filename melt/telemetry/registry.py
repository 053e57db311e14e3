"""The probes melt knows, in the order their channels are preferred: the first probe to offer a
channel name owns it. Which channel is total power is decided after all of them have detected
(power_rails.choose), where rails and device totals are also taken in this order."""

from __future__ import annotations

from melt.telemetry.base import Probe
from melt.telemetry.battery import AndroidBatteryProbe
from melt.telemetry.boards import TegrastatsProbe, VcgencmdProbe
from melt.telemetry.cpufreq import CpufreqProbe
from melt.telemetry.devfreq import DevfreqProbe
from melt.telemetry.ina2xx import Ina2xxProbe
from melt.telemetry.nvml import NvmlProbe
from melt.telemetry.procfs import ProcfsProbe
from melt.telemetry.rapl import RaplProbe
from melt.telemetry.thermal import ThermalProbe

PROBES: list[type[Probe]] = [
    Ina2xxProbe,  # direct sysfs reads, stamped by us, come first
    ProcfsProbe,
    CpufreqProbe,
    ThermalProbe,
    DevfreqProbe,
    TegrastatsProbe,  # Jetson: what sysfs did not give (EMC, rails where sysfs is closed)
    VcgencmdProbe,
    AndroidBatteryProbe,
    NvmlProbe,
    RaplProbe,
]


def make_probes(root: str, sensors: dict, pid: int | None) -> list[Probe]:
    return [cls(root, sensors, pid) for cls in PROBES]
