"""NVIDIA GPUs through NVML (the nvidia-ml-py package, imported as pynvml): power, the GPU's own
energy counter, temperature, SM and memory clocks, utilisation, throttle reasons.

Power here is the GPU board's, not the whole machine's; power_method says "nvml".
"""

from __future__ import annotations

from melt.telemetry.base import Detection, Probe

# clocks_event_reasons bits that mean the GPU is held back (not idle, not application clocks)
THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}


class NvmlProbe(Probe):
    name = "nvml"

    def detect(self) -> Detection:
        d = Detection(self.name)
        self.handles = []
        try:
            import pynvml
        except ImportError:
            d.missing.append("pynvml (pip package nvidia-ml-py): not installed, no NVIDIA GPU telemetry")
            return d
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            d.missing.append(f"NVML: {type(e).__name__}: {e}")
            return d
        self.nvml = pynvml
        self.energy_start: dict[int, float] = {}
        for i in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            self.handles.append(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            d.found.append(f"GPU {i}: {name.decode() if isinstance(name, bytes) else name}")
            d.channels += [
                f"gpu{i}.power_w", f"gpu{i}.energy_j", f"temp.gpu{i}_c", f"gpu{i}.sm_freq_mhz",
                f"gpu{i}.mem_freq_mhz", f"gpu{i}.util_pct", f"throttle.gpu{i}",
            ]  # fmt: skip
        if self.handles:
            d.channels += ["power.total_w", "energy.total_j"]
            d.power_total = "power.total_w"
            d.power_method = "nvml"
            d.notes.append("power.total_w / energy.total_j: sum over GPUs (GPU board power, not the whole machine)")
        return d

    def _energy_j(self, i: int, handle) -> float | None:
        try:
            mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ since driver load
        except Exception:
            return None
        self.energy_start.setdefault(i, mj)
        return (mj - self.energy_start[i]) / 1e3

    def sample(self) -> dict[str, float]:
        nv, values = self.nvml, {}
        power, energy = [], []
        for i, h in enumerate(self.handles):
            readers = {
                f"gpu{i}.power_w": lambda h=h: nv.nvmlDeviceGetPowerUsage(h) / 1e3,  # mW
                f"temp.gpu{i}_c": lambda h=h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
                f"gpu{i}.sm_freq_mhz": lambda h=h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
                f"gpu{i}.mem_freq_mhz": lambda h=h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
                f"gpu{i}.util_pct": lambda h=h: nv.nvmlDeviceGetUtilizationRates(h).gpu,
                f"throttle.gpu{i}": lambda h=h: int(
                    any(nv.nvmlDeviceGetCurrentClocksEventReasons(h) & b for b in THROTTLE_BITS)
                ),
            }
            for channel, read in readers.items():
                try:
                    values[channel] = float(read())
                except Exception:  # a field this GPU does not support stays empty
                    pass
            e = self._energy_j(i, h)
            if e is not None:
                values[f"gpu{i}.energy_j"] = e
                energy.append(e)
            if f"gpu{i}.power_w" in values:
                power.append(values[f"gpu{i}.power_w"])
        if len(power) == len(self.handles):
            values["power.total_w"] = sum(power)
        if len(energy) == len(self.handles):
            values["energy.total_j"] = sum(energy)
        return values

    def close(self) -> None:
        if self.handles:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass
