"""Stand-in for nvidia-ml-py's `pynvml`, for machines with no NVIDIA driver (NVML cannot exist
here). It answers the calls melt's NVML probe makes with fixed values in NVML's own units (mW,
mJ, MHz, %), and a clocks-event-reasons mask with software thermal slowdown set; the energy
counter rises 250 J per read, as NVML's does while a GPU draws power."""

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
_energy_mj = [123_456_000]


class _Util:
    gpu = 97
    memory = 40


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
    return 312_500  # mW


def nvmlDeviceGetTotalEnergyConsumption(handle):
    _energy_mj[0] += 250_000
    return _energy_mj[0]


def nvmlDeviceGetTemperature(handle, sensor):
    return 61


def nvmlDeviceGetClockInfo(handle, clock):
    return {NVML_CLOCK_SM: 1755, NVML_CLOCK_MEM: 2619}[clock]


def nvmlDeviceGetUtilizationRates(handle):
    return _Util()


def nvmlDeviceGetCurrentClocksEventReasons(handle):
    return 0x1 | 0x20  # GPU idle + software thermal slowdown
