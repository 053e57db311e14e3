"""Writes the recorded board trees under tests/lab/boards/ (run once; the output is committed).

Each tree is usable as a device profile's `sensors.root` with transport `local`: sysfs/procfs
files as the boards have them, and stand-in `tegrastats` / `vcgencmd` that replay recorded output
(from ../shared/samples), since those tools cannot run here.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

HERE = Path(__file__).resolve().parent / "boards"

PROC_STAT = """cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0
cpu1 1335884 28758 525742 11722208 3289 0 3367 0 0 0
cpu2 3728294 95810 997180 10759853 3870 0 1841 0 0 0
cpu3 3674693 133160 989740 11003129 3392 0 2111 0 0 0
intr 0
"""
MEMINFO = """MemTotal:        7620000 kB
MemFree:         3100000 kB
MemAvailable:    5120000 kB
Buffers:           60000 kB
Cached:          1800000 kB
"""

ORIN_TEGRASTATS = (
    "05-15-2025 18:30:28 RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) "
    "CPU [97%@1984,95%@1984,95%@1984,91%@1984,88%@1984,93%@247] EMC_FREQ 18%@3199 GR3D_FREQ 84%@[713] "
    "NVENC 1%@115 NVDEC 40%@115 NVJPG off NVJPG1 off VIC 31%@115 OFA off NVDLA0 off PVA0_FREQ off APE 174 "
    "cv0@63.031C cpu@65.562C soc2@64.156C soc0@63.031C cv1@62.937C gpu@63.5C tj@65.562C soc1@64.718C "
    "cv2@60.875C VDD_IN 17946mW/15710mW VDD_CPU_GPU_CV 8896mW/7585mW VDD_SOC 3923mW/3515mW"
)
PI5_PMIC = """ 3V7_WL_SW_A current(0)=0.05855580A
   3V3_SYS_A current(1)=0.06148359A
   1V8_SYS_A current(2)=0.13272650A
  DDR_VDD2_A current(3)=0.13955800A
  DDR_VDDQ_A current(4)=0.00980400A
   1V1_SYS_A current(5)=0.19811380A
    0V8_SW_A current(6)=0.34157550A
  VDD_CORE_A current(7)=5.03652000A
   3V3_DAC_A current(17)=0.00006105A
   3V3_ADC_A current(18)=0.00054945A
   0V8_AON_A current(16)=0.00531135A
      HDMI_A current(22)=0.02161170A
 3V7_WL_SW_V volt(8)=3.61069200V
   3V3_SYS_V volt(9)=3.29982600V
   1V8_SYS_V volt(10)=1.81684800V
  DDR_VDD2_V volt(11)=1.10109800V
  DDR_VDDQ_V volt(12)=0.60366240V
   1V1_SYS_V volt(13)=1.10292900V
    0V8_SW_V volt(14)=0.80292960V
  VDD_CORE_V volt(15)=0.89369880V
   3V3_DAC_V volt(20)=3.29944700V
   3V3_ADC_V volt(21)=3.30402600V
   0V8_AON_V volt(19)=0.79618980V
      HDMI_V volt(23)=4.92450000V
     EXT5V_V volt(24)=4.92450000V
      BATT_V volt(25)=0.00341880V
"""


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def executable(root: Path, rel: str, text: str) -> None:
    write(root, rel, text)
    path = root / rel
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def zone(root: Path, n: int, kind: str, millideg: int) -> None:
    write(root, f"sys/class/thermal/thermal_zone{n}/type", kind)
    write(root, f"sys/class/thermal/thermal_zone{n}/temp", str(millideg))


def policy(root: Path, n: int, cpus: str, cur_khz: int, max_khz: int) -> None:
    base = f"sys/devices/system/cpu/cpufreq/policy{n}"
    write(root, f"{base}/affected_cpus", cpus)
    write(root, f"{base}/scaling_cur_freq", str(cur_khz))
    write(root, f"{base}/scaling_max_freq", str(max_khz))
    write(root, f"{base}/cpuinfo_max_freq", str(max_khz))
    write(root, f"{base}/scaling_governor", "schedutil")


def common(root: Path, model: str, os_name: str) -> None:
    write(root, "proc/stat", PROC_STAT)
    write(root, "proc/meminfo", MEMINFO)
    write(root, "proc/cpuinfo", "".join(f"processor\t: {n}\nmodel name\t: {model}\n\n" for n in range(4)))
    write(root, "etc/os-release", f'PRETTY_NAME="{os_name}"')


def jetson_orin_nano(root: Path) -> None:
    """JetPack 5+: INA3221 through hwmon (mV, mA), devfreq GPU, thermal zones, cpufreq; tegrastats."""
    common(root, "ARMv8 Processor rev 1 (v8l)", "Ubuntu 22.04.4 LTS")
    hwmon = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    write(root, f"{hwmon}/name", "ina3221")
    for n, (label, mv, ma) in enumerate(
        [("VDD_IN", 5072, 1824), ("VDD_CPU_GPU_CV", 5064, 528), ("VDD_SOC", 5064, 672)], 1
    ):
        write(root, f"{hwmon}/in{n}_label", label)
        write(root, f"{hwmon}/in{n}_input", str(mv))
        write(root, f"{hwmon}/curr{n}_input", str(ma))
    write(root, f"{hwmon}/in4_label", "NC")  # an unconnected channel: ignored
    write(root, f"{hwmon}/in4_input", "0")
    write(root, f"{hwmon}/curr4_input", "0")
    zone(root, 0, "cpu-thermal", 48500)
    zone(root, 1, "gpu-thermal", 47000)
    zone(root, 2, "cv0-thermal", -256000)  # offline on this board: dropped
    zone(root, 3, "tj-thermal", 49000)
    policy(root, 0, "0 1 2 3", 1510400, 1510400)
    policy(root, 4, "4 5", 1510400, 1510400)
    write(root, "sys/class/devfreq/17000000.ga10b/cur_freq", "624750000")
    write(root, "sys/class/devfreq/17000000.ga10b/device/load", "372")
    write(root, "usr/share/melt/tegrastats.txt", ORIN_TEGRASTATS)
    executable(
        root,
        "usr/bin/tegrastats",
        "#!/bin/sh\n# stand-in: replays a recorded Orin Nano line every --interval ms\n"
        'ms=1000\nwhile [ $# -gt 0 ]; do [ "$1" = "--interval" ] && ms=$2; shift; done\n'
        'here=$(dirname "$0")\nline=$(cat "$here/../share/melt/tegrastats.txt")\n'
        'while :; do echo "$line" || exit 0; sleep $(awk "BEGIN{print $ms/1000}"); done\n',
    )


def raspberry_pi_5(root: Path) -> None:
    """Thermal zone and cpufreq in sysfs; vcgencmd (measure_temp, get_throttled, pmic_read_adc)."""
    common(root, "Cortex-A76", "Debian GNU/Linux 12 (bookworm)")
    zone(root, 0, "cpu-thermal", 48300)
    policy(root, 0, "0 1 2 3", 2400000, 2400000)
    write(root, "usr/share/melt/pmic_read_adc.txt", PI5_PMIC)
    executable(
        root,
        "usr/bin/vcgencmd",
        '#!/bin/sh\n# stand-in: replays recorded Raspberry Pi 5 output\nhere=$(dirname "$0")\n'
        'case "$1" in\n'
        '  measure_temp) echo "temp=48.3\'C" ;;\n'
        "  get_throttled) echo 'throttled=0x50005' ;;  # under-voltage and throttled now and since boot\n"
        '  pmic_read_adc) cat "$here/../share/melt/pmic_read_adc.txt" ;;\n'
        '  *) echo "error=1 error_msg=\\"Command not registered\\"" >&2; exit 1 ;;\n'
        "esac\n",
    )


def android_phone(root: Path) -> None:
    """Two supplies (usb and bms; the battery is found by type, not name) and thermal zones."""
    common(root, "Qualcomm Technologies, Inc SM8150", "Android 14")
    base = "sys/class/power_supply"
    write(root, f"{base}/usb/type", "USB")
    write(root, f"{base}/usb/online", "0")
    for name, value in {
        "type": "Battery",
        "status": "Discharging",
        "capacity": "70",
        "current_now": "-1202147",  # uA, negative while discharging on this phone
        "voltage_now": "4137440",  # uV
        "temp": "360",  # tenths of a degree C
    }.items():
        write(root, f"{base}/bms/{name}", value)
    zone(root, 0, "cpu-0-0-usr", 41200)
    zone(root, 1, "battery", 36000)
    zone(root, 2, "xo-therm-adc", -273000)  # absurd reading: dropped
    policy(root, 0, "0 1 2 3", 1804800, 1804800)
    policy(root, 4, "4 5 6 7", 1171200, 2419200)  # the big cores held at half their maximum


if __name__ == "__main__":
    for name, build in {
        "jetson-orin-nano": jetson_orin_nano,
        "raspberry-pi-5": raspberry_pi_5,
        "android-phone": android_phone,
    }.items():
        shutil.rmtree(HERE / name, ignore_errors=True)
        build(HERE / name)
        print(HERE / name)
