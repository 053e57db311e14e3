"""The three board trees under tests/lab/boards/, as functions of time, and the writer of their t = 0 state.

Each board is a sensor root for a device profile with transport `local`: the sysfs/procfs files the
board has, in the kernel's units (hwmon INA3221: in*_input mV, curr*_input mA, shunt in4-7 uV;
thermal zones: millidegrees C; cpufreq: kHz; devfreq: Hz, GPU load 0-1000; /proc/stat: USER_HZ ticks,
the `cpu` line the sum of the `cpuN` lines; /proc/meminfo: kB; power_supply: uA, uV, tenths of a degree)
and stand-in `tegrastats` / `vcgencmd` that print what the board shows now.

A board runs a cycle of phases (idle, load): in each phase every core has a utilisation, every policy
a frequency, every rail a current; temperatures move linearly to the phase's value over its first
part and hold. `Board.files(t)` is the whole state t seconds into the timeline; the committed tree is
`files(0)`, and tests/lab/replay.py advances a copy of it along the timeline while a test runs. One
model gives every file, so the files agree with each other: tegrastats' rails are the INA3221
readings, its CPU loads the /proc/stat deltas, its zones the thermal zones; vcgencmd measure_temp is
the thermal zone; the CPUs in /proc/cpuinfo, /proc/stat and the cpufreq policies are the same.

The load phases replay real published output (../shared/samples, copied here so a clone without
shared/ can build the trees); the rest is constructed. Each tree's PROVENANCE.md, written from the
`recorded` / `constructed` notes below, says which is which. Run once after a change; the output is
committed: python tests/lab/make_boards.py
"""

from __future__ import annotations

import abc
import math
import os
import shutil
import stat
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent / "boards"
USER_HZ = 100  # arm64 and x86 Linux both export 100 ticks/s to user space (proc(5), sysconf(_SC_CLK_TCK))
UPTIME_S = 3 * 3600.0  # the boards have been up 3 h at t = 0 (constructed): /proc/stat counters start there
TEMP_RAMP = 0.4  # temperatures reach the phase's value after this share of the phase, then hold


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    util: tuple[float, ...]  # % busy per CPU
    freq_khz: tuple[int, ...]  # scaling_cur_freq per policy
    temp_mc: tuple[int, ...]  # millidegrees per thermal zone, reached after TEMP_RAMP of the phase
    mem_used_kb: int  # MemTotal - MemAvailable
    power: dict  # board-specific: rail -> (mV, mA); battery -> (uA, uV); pmic -> text
    extra: dict = field(default_factory=dict)  # board-specific values of its tool's output


def ina_pairs(mws: tuple[int, ...], near_mv: int) -> list[tuple[int, int]]:
    """(mV, mA) per power level of one rail, whole numbers as the INA3221 driver gives them, that tegrastats
    shows as those mW (floor(mV x mA / 1000)); one bus voltage for all levels, as near `near_mv` as can be,
    so that a reader that takes in*_input and curr*_input across a step never pairs two levels' voltages."""
    for dv in range(0, 400):
        for mv in (near_mv - dv, near_mv + dv):
            mas = [math.ceil(mw * 1000 / mv) for mw in mws]
            if all(mv * ma // 1000 == mw for ma, mw in zip(mas, mws)):
                return [(mv, ma) for ma in mas]
    raise ValueError(f"no bus voltage near {near_mv} mV gives {mws} mW")


class Board(abc.ABC):
    name = ""
    cpus = 0
    policies: dict[int, tuple[int, ...]] = {}  # policy N -> its CPUs
    max_khz: dict[int, int] = {}
    min_khz: dict[int, int] = {}
    zones: tuple[str, ...] = ()
    mem_total_kb = 0
    phases: tuple[Phase, ...] = ()
    recorded: list[str] = []  # PROVENANCE lines: what is replayed from real output, and from where
    constructed: list[str] = []  # and what is made up, and how

    # --- the timeline ---------------------------------------------------------------------------
    @property
    def cycle_s(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def start_s(self) -> float:
        """Where in the cycle t = 0 is: the last phase (load, the recorded one) after its temperatures have
        reached the phase's value, so that the committed tree shows the recorded readings."""
        return self.cycle_s - (1 - TEMP_RAMP) * self.phases[-1].seconds / 2

    def phase_at(self, t: float) -> tuple[int, float]:
        """(phase index, seconds into it) at t seconds into the timeline (the cycle repeats)."""
        x = (t + self.start_s) % self.cycle_s
        for i, p in enumerate(self.phases):
            if x < p.seconds:
                return i, x
            x -= p.seconds
        return len(self.phases) - 1, self.phases[-1].seconds

    def boundaries(self, t0: float, t1: float) -> list[float]:
        """Timeline seconds in (0, t1], at or after t0, where one phase gives way to the next (power steps)."""
        x0, x1 = t0 + self.start_s, t1 + self.start_s
        out, start = [], math.floor(x0 / self.cycle_s) * self.cycle_s
        while start <= x1:
            edge = start
            for p in self.phases:
                if x0 <= edge <= x1 and edge > self.start_s:
                    out.append(round(edge - self.start_s, 9))
                edge += p.seconds
            start += self.cycle_s
        return sorted(set(out))

    def t_of(self, phase: int, into: float) -> float:
        """The timeline second at which phase `phase`, in its first whole run after t = 0, has run `into` s."""
        return (sum(p.seconds for p in self.phases[:phase]) - self.start_s) % self.cycle_s + into

    def _busy_x(self, x: float) -> list[float]:
        full, rest = divmod(x, self.cycle_s)
        out = [full * sum(p.util[c] / 100 * p.seconds for p in self.phases) for c in range(self.cpus)]
        for p in self.phases:
            step = min(rest, p.seconds)
            for c in range(self.cpus):
                out[c] += p.util[c] / 100 * step
            rest -= step
            if rest <= 0:
                break
        return out

    def busy_s(self, t: float) -> list[float]:
        """CPU-seconds each core spent busy over [0, t] of the timeline (the integral of its utilisation)."""
        return [b - a for a, b in zip(self._busy_x(self.start_s), self._busy_x(t + self.start_s))]

    def temp_mc(self, t: float) -> list[int]:
        i, into = self.phase_at(t)
        now, before = self.phases[i], self.phases[i - 1]
        share = min(1.0, into / (TEMP_RAMP * now.seconds))
        return [round(a + (b - a) * share) for a, b in zip(before.temp_mc, now.temp_mc)]

    def power_w(self, t: float) -> float:
        """Total power the board's own total shows at t (W): what melt's power.total_w should read."""
        return self.phase_power_w(self.phases[self.phase_at(t)[0]])

    @abc.abstractmethod
    def phase_power_w(self, phase: Phase) -> float:
        """The board's total power in this phase (W)."""

    def energy_j(self, t0: float, t1: float) -> float:
        """The exact integral of power_w over [t0, t1] (J): power is constant within a phase."""
        edges = [t0, *self.boundaries(t0, t1), t1]
        return sum((b - a) * self.power_w((a + b) / 2) for a, b in zip(edges, edges[1:]) if b > a)

    def util_pct(self, t: float) -> float:
        """The whole machine's CPU utilisation in the phase at t (%)."""
        p = self.phases[self.phase_at(t)[0]]
        return sum(p.util) / self.cpus

    # --- the files --------------------------------------------------------------------------------
    def proc_stat(self, t: float) -> str:
        """/proc/stat: per CPU user nice system idle iowait irq softirq steal guest guest_nice in USER_HZ ticks,
        whole ticks as the kernel counts them (a tick is busy or idle, so neither count ever falls): a CPU's
        busy ticks (user nice system irq softirq) are the integral of its utilisation, its idle ticks the rest
        of the time since boot; busy splits 80/3/14/1/rest % over
        those, idle 99/1 % over idle/iowait. The `cpu` line is the sum of the `cpuN` lines."""
        busy_now = self.busy_s(t)
        rows = []
        for c in range(self.cpus):
            busy_s = UPTIME_S * (0.12 + 0.01 * c) + busy_now[c]  # 3 h before t = 0: constructed
            busy, idle = int(busy_s * USER_HZ), int((UPTIME_S + t - busy_s) * USER_HZ)  # each only ever grows
            user, nice, system, irq = busy * 80 // 100, busy * 3 // 100, busy * 14 // 100, busy // 100
            softirq = busy - user - nice - system - irq
            iowait = idle // 100
            rows.append([user, nice, system, idle - iowait, iowait, irq, softirq, 0, 0, 0])
        total = [sum(col) for col in zip(*rows)]
        running = sum(1 for u in self.phases[self.phase_at(t)[0]].util if u >= 50) + 1
        lines = ["cpu  " + " ".join(map(str, total))]
        lines += [f"cpu{c} " + " ".join(map(str, r)) for c, r in enumerate(rows)]
        switches = int((UPTIME_S + t) * 2400)
        lines += [f"ctxt {switches}", "btime 1747329000", f"processes {int(UPTIME_S * 3 + t * 20)}"]
        lines += [f"procs_running {running}", "procs_blocked 0"]
        return "\n".join(lines) + "\n"

    def meminfo(self, t: float) -> str:
        p = self.phases[self.phase_at(t)[0]]
        available = self.mem_total_kb - p.mem_used_kb
        cached = available // 2
        buffers = available // 16
        free = available - cached - buffers
        swap_total, swap_used, swap_cached = self.swap_kb(p)
        return (
            f"MemTotal:       {self.mem_total_kb:>8} kB\nMemFree:        {free:>8} kB\n"
            f"MemAvailable:   {available:>8} kB\nBuffers:        {buffers:>8} kB\nCached:         {cached:>8} kB\n"
            f"SwapCached:     {swap_cached:>8} kB\nSwapTotal:      {swap_total:>8} kB\n"
            f"SwapFree:       {swap_total - swap_used:>8} kB\n"
        )

    def swap_kb(self, phase: Phase) -> tuple[int, int, int]:
        return 0, 0, 0

    def cpu_files(self, t: float) -> dict[str, str]:
        i, _ = self.phase_at(t)
        out = {}
        for n, khz in zip(self.policies, self.phases[i].freq_khz):
            out[f"sys/devices/system/cpu/cpufreq/policy{n}/scaling_cur_freq"] = str(khz)
        for z, mc in enumerate(self.temp_mc(t)):
            out[f"sys/class/thermal/thermal_zone{z}/temp"] = str(mc)
        out["proc/stat"] = self.proc_stat(t)
        out["proc/meminfo"] = self.meminfo(t)
        return out

    def dynamic(self, t: float) -> dict[str, str]:
        """Every file that changes with time, at t seconds into the timeline."""
        return self.cpu_files(t)

    def static(self) -> dict[str, str]:
        """Files that do not change: cpuinfo, policies' limits, zone types, labels."""
        out = {"proc/cpuinfo": self.cpuinfo()}
        out["sys/devices/system/cpu/online"] = f"0-{self.cpus - 1}"
        out["sys/devices/system/cpu/possible"] = f"0-{self.cpus - 1}"
        for n, members in self.policies.items():
            base = f"sys/devices/system/cpu/cpufreq/policy{n}"
            out[f"{base}/affected_cpus"] = " ".join(map(str, members))
            out[f"{base}/related_cpus"] = " ".join(map(str, members))
            out[f"{base}/scaling_max_freq"] = str(self.max_khz[n])
            out[f"{base}/cpuinfo_max_freq"] = str(self.max_khz[n])
            out[f"{base}/scaling_min_freq"] = str(self.min_khz[n])
            out[f"{base}/cpuinfo_min_freq"] = str(self.min_khz[n])
            out[f"{base}/scaling_governor"] = "schedutil"
        for z, kind in enumerate(self.zones):
            out[f"sys/class/thermal/thermal_zone{z}/type"] = kind
        return out

    def links(self) -> dict[str, str]:
        """Symlinks: each CPU's cpufreq folder is its policy's, as the kernel links them."""
        return {
            f"sys/devices/system/cpu/cpu{c}/cpufreq": f"../cpufreq/policy{n}"
            for n, members in self.policies.items()
            for c in members
        }

    def executables(self) -> dict[str, str]:
        return {}

    @abc.abstractmethod
    def cpuinfo(self) -> str:
        """The board's /proc/cpuinfo."""

    def files(self, t: float) -> dict[str, str]:
        return {**self.static(), **self.dynamic(t)}

    def provenance(self) -> str:
        lines = [f"# {self.name}: where each value comes from", ""]
        lines += ["Written by tests/lab/make_boards.py: the state at t = 0, which lies in the load phase, so the",
                  "files as committed show the recorded readings. tests/lab/replay.py advances a copy of this tree",
                  f"along the timeline while a test runs: a {self.cycle_s:g} s cycle of phases "
                  + ", ".join(f"{p.name} {p.seconds:g} s" for p in self.phases) + ".", "",
                  "## Recorded (real published output)", ""]  # fmt: skip
        lines += [f"- {r}" for r in self.recorded] + ["", "## Constructed", ""]
        lines += [f"- {c}" for c in self.constructed]
        return "\n".join(lines) + "\n"


def arm64_cpuinfo(n: int, features: str, part: str, variant: str, revision: int, model: str | None) -> str:
    """arch/arm64/kernel/cpuinfo.c c_show: a block per CPU (NVIDIA's L4T kernels add a `model name` line)."""
    name = f"model name\t: {model}\n" if model else ""
    return "".join(
        f"processor\t: {c}\n{name}BogoMIPS\t: 62.50\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n"
        for c in range(n)
    )


# --- Jetson Orin (tegrastats, INA3221 in hwmon, devfreq GPU) ------------------------------------------

ORIN_LINE = (  # ../shared/samples/tegrastats.txt; source: rbonghi/jetson_stats issue 624
    "05-15-2025 18:30:28 RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) "
    "CPU [97%@1984,95%@1984,95%@1984,91%@1984,88%@1984,93%@247] EMC_FREQ 18%@3199 GR3D_FREQ 84%@[713] "
    "NVENC 1%@115 NVDEC 40%@115 NVJPG off NVJPG1 off VIC 31%@115 OFA off NVDLA0 off PVA0_FREQ off APE 174 "
    "cv0@63.031C cpu@65.562C soc2@64.156C soc0@63.031C cv1@62.937C gpu@63.5C tj@65.562C soc1@64.718C "
    "cv2@60.875C VDD_IN 17946mW/15710mW VDD_CPU_GPU_CV 8896mW/7585mW VDD_SOC 3923mW/3515mW"
)
ORIN_ZONES = ("cpu-thermal", "gpu-thermal", "cv0-thermal", "cv1-thermal", "cv2-thermal",
              "soc0-thermal", "soc1-thermal", "soc2-thermal", "tj-thermal")  # fmt: skip
# tegrastats prints the zones in this order, named without "-thermal"
ORIN_LINE_ZONES = ("cv0", "cpu", "soc2", "soc0", "cv1", "gpu", "tj", "soc1", "cv2")
ORIN_RAILS = ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
ORIN_GPU = "sys/class/devfreq/17000000.ga10b"
# rail -> (mV, mA) idle and under load: the recorded mW, at one bus voltage per rail
ORIN_LEVELS = {"VDD_IN": ina_pairs((5299, 17946), 5072), "VDD_CPU_GPU_CV": ina_pairs((773, 8896), 5064),
               "VDD_SOC": ina_pairs((1424, 3923), 5064)}  # fmt: skip
SHUNT_MOHM = 5  # INA3221 shunt resistors on the module (constructed): in4-6 = I x R


def _orin_zone_mc(line_c: dict[str, float]) -> tuple[int, ...]:
    by_name = {f"{k}-thermal": round(v * 1000) for k, v in line_c.items()}
    return tuple(by_name[z] for z in ORIN_ZONES)


class JetsonOrin(Board):
    name = "jetson-orin-nano"
    cpus = 6
    policies = {0: (0, 1, 2, 3), 4: (4, 5)}
    max_khz = {0: 1984000, 4: 1984000}
    min_khz = {0: 115200, 4: 115200}
    zones = ORIN_ZONES
    mem_total_kb = 7620 * 1024  # tegrastats prints MemTotal / 1024: "RAM u/7620MB"
    LOAD_C = {"cv0": 63.031, "cpu": 65.562, "soc2": 64.156, "soc0": 63.031, "cv1": 62.937, "gpu": 63.5,
              "tj": 65.562, "soc1": 64.718, "cv2": 60.875}  # fmt: skip
    phases = (
        Phase(
            "idle", 0.7, util=(6, 9, 5, 16, 3, 2), freq_khz=(729600, 729600),
            temp_mc=_orin_zone_mc({k: v - 2.5 for k, v in LOAD_C.items()}), mem_used_kb=6420 * 1024,
            power={rail: levels[0] for rail, levels in ORIN_LEVELS.items()},
            extra={"cpu_mhz": (729, 729, 729, 729, 729, 729), "emc": (0, 2133), "gr3d": (0, 306),
                   "engines": "NVENC off NVDEC off NVJPG off NVJPG1 off VIC off OFA off NVDLA0 off PVA0_FREQ off "
                              "APE 174", "swap": (2640, 202), "gpu_hz": 306000000, "gpu_load": 0},
        ),
        Phase(
            "load", 1.3, util=(97, 95, 95, 91, 88, 93), freq_khz=(1984000, 1984000),
            temp_mc=_orin_zone_mc(LOAD_C), mem_used_kb=6982 * 1024,
            power={rail: levels[1] for rail, levels in ORIN_LEVELS.items()},
            extra={"cpu_mhz": (1984, 1984, 1984, 1984, 1984, 247), "emc": (18, 3199), "gr3d": (84, 713),
                   "engines": "NVENC 1%@115 NVDEC 40%@115 NVJPG off NVJPG1 off VIC 31%@115 OFA off NVDLA0 off "
                              "PVA0_FREQ off APE 174", "swap": (2640, 202), "gpu_hz": 713000000, "gpu_load": 840},
        ),
    )  # fmt: skip
    recorded = [
        "load phase: every field of the tegrastats line in ../shared/samples/tegrastats.txt (Orin, JetPack 5+; "
        "source: rbonghi/jetson_stats issue 624), and the files it is read from: per-core loads (the /proc/stat "
        "deltas), clocks (cpufreq policy0/policy4 scaling_cur_freq, devfreq cur_freq), RAM and swap "
        "(/proc/meminfo), the nine zones (thermal_zone*/temp), the three rails (INA3221 in1-3 mV x curr1-3 mA, "
        "chosen so that floor(mV x mA / 1000) is the line's mW). The line printed in the load phase is the "
        "recorded line, except the date (it advances) and the rails' running average",
        "idle phase: the rails (VDD_IN 5299 mW, VDD_CPU_GPU_CV 773 mW, VDD_SOC 1424 mW), EMC 0%@2133 and the "
        "loads and clock of cores 0-3 (6/9/5/16 % at 729 MHz) of an idle Orin NX 16 GB's tegrastats line "
        "(DataDog/datadog-agent issue 17678): another Orin module, used for the idle levels only",
    ]
    constructed = [
        "the board's identity: the recorded line's clocks (CPU 1984 MHz, GPU 713 MHz) are an Orin NX 8 GB's "
        "maxima (an Orin Nano tops at 1510 MHz CPU); the tree keeps the name jetson-orin-nano and takes its "
        "limits from the line: 6 CPUs in two clusters (policy0: 0-3, policy4: 4-5), max 1984000 kHz",
        "core 5 at 247 MHz in the recorded line while its cluster (policy4) requests 1984 MHz: kept as recorded "
        "in the tegrastats line; the sysfs policy says 1984000 kHz",
        "idle phase: cores 4-5 at 3/2 %, the zones 2.5 C under the load phase, GPU 0% at 306 MHz, 6420 MB used, "
        "the video engines off",
        "phase lengths (idle 0.7 s, load 1.3 s), temperatures moving linearly over the first 40% of a phase",
        "/proc/stat counters before t = 0 (3 h up), the busy/idle split over user/nice/system/irq/softirq, "
        "/proc/meminfo's split of MemAvailable over MemFree/Buffers/Cached",
        "/proc/cpuinfo: arm64's block per CPU with L4T's `model name` line; Cortex-A78AE id (part 0xd42) and "
        "features as best known, not copied from a board",
        "INA3221 bus voltages (about 5.07 V, one per rail), the shunt voltages in4-6 (uV, a 5 mOhm shunt) "
        "and their sum in7",
        "the tegrastats rails' average: the replayed power's mean since the timeline started",
    ]

    def phase_power_w(self, phase: Phase) -> float:
        mv, ma = phase.power["VDD_IN"]
        return mv * ma / 1e6

    def swap_kb(self, phase: Phase) -> tuple[int, int, int]:
        used, cached = phase.extra["swap"]
        return 16384 * 1024, used * 1024, cached * 1024

    def cpuinfo(self) -> str:
        features = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                    "asimddp uscat ilrcpc flagm paca pacg")  # fmt: skip
        return arm64_cpuinfo(self.cpus, features, "0xd42", "0x1", 1, "ARMv8 Processor rev 1 (v8l)")

    def static(self) -> dict[str, str]:
        out = super().static()
        out[f"{ORIN_HWMON}/name"] = "ina3221"
        for n, rail in enumerate(ORIN_RAILS, 1):
            out[f"{ORIN_HWMON}/in{n}_label"] = rail
        out[f"{ORIN_HWMON}/in7_label"] = "sum of shunt voltages"
        out["etc/os-release"] = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
        return out

    def rail_mw_avg(self, rail: str, t: float) -> int:
        """tegrastats' second figure: the rail's mean power since it started (here: since the timeline did)."""
        if t <= 0:
            mv, ma = self.phases[self.phase_at(0)[0]].power[rail]
            return mv * ma // 1000
        edges = [0.0, *self.boundaries(0, t), t]
        joules = 0.0
        for a, b in zip(edges, edges[1:]):
            mv, ma = self.phases[self.phase_at((a + b) / 2)[0]].power[rail]
            joules += (b - a) * mv * ma / 1e6
        return int(joules / t * 1000)

    def tegrastats_line(self, t: float) -> str:
        """The line tegrastats prints at t, in the recorded line's form, from the same state as the files."""
        i, _ = self.phase_at(t)
        p = self.phases[i]
        stamp = datetime(2025, 5, 15, 18, 30, 28) + timedelta(seconds=int(t))
        used = p.mem_used_kb // 1024
        swap_used, swap_cached = p.extra["swap"]
        cores = ",".join(f"{round(u)}%@{mhz}" for u, mhz in zip(p.util, p.extra["cpu_mhz"]))
        temps = dict(zip(ORIN_ZONES, self.temp_mc(t)))
        zones = " ".join(f"{z}@{temps[z + '-thermal'] / 1000:g}C" for z in ORIN_LINE_ZONES)
        rails = " ".join(
            f"{r} {p.power[r][0] * p.power[r][1] // 1000}mW/{self.rail_mw_avg(r, t)}mW" for r in ORIN_RAILS
        )
        return (
            f"{stamp:%m-%d-%Y %H:%M:%S} RAM {used}/{self.mem_total_kb // 1024}MB (lfb 5x1MB) "
            f"SWAP {swap_used}/16384MB (cached {swap_cached}MB) CPU [{cores}] "
            f"EMC_FREQ {p.extra['emc'][0]}%@{p.extra['emc'][1]} GR3D_FREQ {p.extra['gr3d'][0]}%@[{p.extra['gr3d'][1]}] "
            f"{p.extra['engines']} {zones} {rails}"
        )

    def dynamic(self, t: float) -> dict[str, str]:
        out = self.cpu_files(t)
        p = self.phases[self.phase_at(t)[0]]
        shunts = []
        for n, rail in enumerate(ORIN_RAILS, 1):
            mv, ma = p.power[rail]
            out[f"{ORIN_HWMON}/in{n}_input"] = str(mv)
            out[f"{ORIN_HWMON}/curr{n}_input"] = str(ma)
            out[f"{ORIN_HWMON}/in{n + 3}_input"] = str(ma * SHUNT_MOHM)  # uV across the shunt
            shunts.append(ma * SHUNT_MOHM)
        out[f"{ORIN_HWMON}/in7_input"] = str(sum(shunts))
        out[f"{ORIN_GPU}/cur_freq"] = str(p.extra["gpu_hz"])
        out[f"{ORIN_GPU}/device/load"] = str(p.extra["gpu_load"])
        out["usr/share/melt/tegrastats.txt"] = self.tegrastats_line(t)
        return out

    def executables(self) -> dict[str, str]:
        return {
            "usr/bin/tegrastats": "#!/bin/sh\n"
            "# stand-in: every --interval ms, the line the board shows now (written by tests/lab/replay.py)\n"
            'ms=1000\nwhile [ $# -gt 0 ]; do [ "$1" = "--interval" ] && ms=$2; shift; done\n'
            'here=$(dirname "$0")\ns=$(awk "BEGIN{print $ms/1000}")\n'
            'while :; do cat "$here/../share/melt/tegrastats.txt" || exit 0; sleep "$s"; done\n'
        }


# --- Raspberry Pi 5 (vcgencmd: measure_temp, get_throttled, pmic_read_adc) ----------------------------

PI5_PMIC_LOAD = """ 3V7_WL_SW_A current(0)=0.05855580A
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
"""  # ../shared/samples/vcgencmd.txt: a Pi 5 under load
# idle (constructed): VDD_CORE at 0.72 V drawing 1.2 A, DDR_VDD2 0.08 A; every other line as recorded
PI5_PMIC_IDLE = (
    PI5_PMIC_LOAD.replace("VDD_CORE_A current(7)=5.03652000A", "VDD_CORE_A current(7)=1.20000000A")
    .replace("VDD_CORE_V volt(15)=0.89369880V", "VDD_CORE_V volt(15)=0.72000000V")
    .replace("DDR_VDD2_A current(3)=0.13955800A", "DDR_VDD2_A current(3)=0.08000000A")
)


def pmic_total_w(text: str) -> float:
    """Sum of V x I over the rails with both (what the vcgencmd probe calls total power)."""
    amps, volts = {}, {}
    for line in text.splitlines():
        name, _, value = line.strip().partition("=")
        rail = name.split()[0][:-2]
        (amps if name.split()[0].endswith("_A") else volts)[rail] = float(value[:-1])
    return sum(a * volts[r] for r, a in amps.items() if r in volts)


class RaspberryPi5(Board):
    name = "raspberry-pi-5"
    cpus = 4
    policies = {0: (0, 1, 2, 3)}
    max_khz = {0: 2400000}
    min_khz = {0: 1500000}
    zones = ("cpu-thermal",)
    mem_total_kb = 8245008
    phases = (
        Phase("idle", 0.9, util=(3, 2, 4, 1), freq_khz=(1500000,), temp_mc=(45100,), mem_used_kb=690000,
              power={"pmic": PI5_PMIC_IDLE}, extra={"throttled": "0x50000"}),
        Phase("load", 1.1, util=(100, 100, 100, 100), freq_khz=(2400000,), temp_mc=(48300,),
              mem_used_kb=1450000, power={"pmic": PI5_PMIC_LOAD}, extra={"throttled": "0x50005"}),
    )  # fmt: skip
    recorded = [
        "load phase: `vcgencmd pmic_read_adc` as a Pi 5 printed it under load, and `measure_temp` 48.3'C "
        "(../shared/samples/vcgencmd.txt); thermal_zone0 (cpu-thermal) reads the same 48300 millidegrees",
        "idle phase: `get_throttled` throttled=0x50000 (under-voltage and throttling have occurred since boot, "
        "neither now), as recorded",
    ]
    constructed = [
        "load phase: throttled=0x50005 (the recorded since-boot bits with under-voltage and throttling set now, "
        "as a weak supply gives under load); cpufreq stays at 2400000 kHz, since the firmware's throttling is "
        "not shown in scaling_cur_freq",
        "idle phase: VDD_CORE 1.2 A at 0.72 V and DDR_VDD2 0.08 A, the other PMIC lines as recorded; "
        "45.1 C; 1500000 kHz",
        "phase lengths (idle 0.9 s, load 1.1 s); /proc/stat and /proc/meminfo as for every board "
        "(8 GB: MemTotal 8245008 kB)",
        "/proc/cpuinfo: arm64's block per CPU (Cortex-A76, part 0xd0b) and the Pi's Revision/Model lines",
    ]

    def phase_power_w(self, phase: Phase) -> float:
        return pmic_total_w(phase.power["pmic"])

    def provenance(self) -> str:
        if self.name != RaspberryPi5.name:
            return super().provenance()
        switch = RaspberryPi5Throttling.SWITCH_S
        return super().provenance() + (
            "\n## Timeline raspberry-pi-5-throttling (tests/lab/replay.py over a copy of this tree)\n\n"
            "For the sustained protocol's throttle onset: the load phase above, held, with get_throttled first "
            "the recorded throttled=0x50000 (under-voltage and throttling have occurred since boot, neither now) "
            f"and, from {switch:g} s into the timeline on, throttled=0x50005: the same recorded since-boot bits "
            "with their now-counterparts (bit 0 under-voltage, bit 2 throttled) set, as this tree's constructed "
            "load phase has them. The switch time and the holding are constructed; pmic_read_adc and "
            "measure_temp are the recorded load readings throughout, cpufreq stays at 2400000 kHz (the "
            "firmware's throttling is not shown in scaling_cur_freq).\n"
        )

    def cpuinfo(self) -> str:
        features = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
        return (
            arm64_cpuinfo(self.cpus, features, "0xd0b", "0x4", 1, None)
            + "Revision\t: d04170\nSerial\t\t: 0000000000000000\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
        )

    def static(self) -> dict[str, str]:
        out = super().static()
        out["etc/os-release"] = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        return out

    def dynamic(self, t: float) -> dict[str, str]:
        out = self.cpu_files(t)
        p = self.phases[self.phase_at(t)[0]]
        (mc,) = self.temp_mc(t)
        out["usr/share/melt/measure_temp.txt"] = f"temp={mc / 1000:.1f}'C"
        out["usr/share/melt/get_throttled.txt"] = f"throttled={p.extra['throttled']}"
        out["usr/share/melt/pmic_read_adc.txt"] = p.power["pmic"]
        return out

    def executables(self) -> dict[str, str]:
        return {
            "usr/bin/vcgencmd": "#!/bin/sh\n# stand-in: what the board shows now (written by tests/lab/replay.py)\n"
            'here=$(dirname "$0")/../share/melt\n'
            'case "$1" in\n'
            '  measure_temp|get_throttled|pmic_read_adc) cat "$here/$1.txt" ;;\n'
            '  *) echo "error=1 error_msg=\\"Command not registered\\"" >&2; exit 1 ;;\n'
            "esac\n"
        }


class RaspberryPi5Throttling(RaspberryPi5):
    """The Pi 5 under continuous load whose firmware starts throttling partway, for the sustained protocol's
    onset (tests/test_sustained.py). Not a tree of its own: replay.py moves a copy of the Pi 5's committed tree
    along this timeline. Load from t = 0 with the recorded get_throttled (0x50000: nothing now), then from
    SWITCH_S on the same with the "now" bits of the recorded since-boot bits set (0x50005), for good; every
    other file as the Pi 5's load phase (the recorded pmic_read_adc and 48.3 'C)."""

    name = "raspberry-pi-5-throttling"
    tree = "raspberry-pi-5"
    SWITCH_S = 1.0  # timeline seconds at which the throttle bits switch on
    phases = (
        replace(RaspberryPi5.phases[1], name="load", seconds=SWITCH_S, extra={"throttled": "0x50000"}),
        replace(RaspberryPi5.phases[1], name="throttled", seconds=86400.0, extra={"throttled": "0x50005"}),
    )

    @property
    def start_s(self) -> float:
        return 0.0  # the timeline starts with the load phase, not in it


# --- an Android phone (battery in power_supply, thermal zones, two clusters) -------------------------


class AndroidPhone(Board):
    name = "android-phone"
    cpus = 8
    policies = {0: (0, 1, 2, 3), 4: (4, 5, 6, 7)}
    max_khz = {0: 1900800, 4: 2457600}
    min_khz = {0: 300000, 4: 300000}
    zones = ("cpu-0-0-usr", "battery", "xo-therm-adc")
    mem_total_kb = 5795000
    LOAD_UA = 1202147
    IDLE_UA = 420000
    phases = (
        Phase("idle", 0.6, util=(8, 5, 4, 3, 0, 0, 1, 0), freq_khz=(300000, 300000),
              temp_mc=(39800, 35900, -273000), mem_used_kb=3400000,
              power={"battery": (-IDLE_UA, 4137440)},
              extra={"temp": 359}),
        Phase("load", 1.4, util=(30, 20, 25, 15, 98, 97, 99, 96), freq_khz=(1900800, 2457600),
              temp_mc=(41200, 36000, -273000), mem_used_kb=3650000,
              power={"battery": (-LOAD_UA, 4137440)}, extra={"temp": 360}),
    )  # fmt: skip
    recorded = [
        "load phase: the battery as the Xiaomi Mi 6 (sagit) reported it in ../shared/samples/"
        "android_power_supply.txt: current_now -1202147 uA (negative while discharging), voltage_now "
        "4137440 uV, temp 360 (tenths of a degree), capacity 70, Discharging; the supply is named bms",
    ]
    constructed = [
        "the phone's CPUs and limits follow the Mi 6's Snapdragon 835 (MSM8998): 8 CPUs in two clusters "
        "(policy0: 0-3 up to 1900800 kHz, policy4: 4-7 up to 2457600 kHz); /proc/cpuinfo as older arm64 kernels "
        "print it; no /etc/os-release (Android has none)",
        "idle phase: current_now -420000 uA, the little and big cores at 300 MHz; voltage_now stays at the "
        "recorded 4137440 uV in both phases (a real battery's would rise a little as the current falls: held, "
        "so that a reader taking current_now and voltage_now across a step never pairs two phases' values)",
        "thermal zones: cpu-0-0-usr (39.8-41.2 C), battery (the battery's temp), xo-therm-adc at -273 C "
        "(an absurd reading, to be dropped); Qualcomm zone names of later kernels, not the Mi 6's own",
        "the usb supply (offline), phase lengths (idle 0.6 s, load 1.4 s), /proc/stat and /proc/meminfo as "
        "for every board",
    ]

    def phase_power_w(self, phase: Phase) -> float:
        ua, uv = phase.power["battery"]
        return abs(ua) * uv / 1e12

    def cpuinfo(self) -> str:
        cores = "".join(f"processor\t: {c}\n" for c in range(self.cpus))
        return (
            f"Processor\t: AArch64 Processor rev 4 (aarch64)\n{cores}"
            "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\nCPU implementer\t: 0x51\n"
            "CPU architecture: 8\nCPU variant\t: 0xa\nCPU part\t: 0x801\nCPU revision\t: 4\n\n"
            "Hardware\t: Qualcomm Technologies, Inc MSM8998\n"
        )

    def static(self) -> dict[str, str]:
        out = super().static()
        base = "sys/class/power_supply"
        out.update({f"{base}/usb/type": "USB", f"{base}/usb/online": "0", f"{base}/bms/type": "Battery",
                    f"{base}/bms/status": "Discharging", f"{base}/bms/capacity": "70"})  # fmt: skip
        return out

    def dynamic(self, t: float) -> dict[str, str]:
        out = self.cpu_files(t)
        p = self.phases[self.phase_at(t)[0]]
        ua, uv = p.power["battery"]
        out["sys/class/power_supply/bms/current_now"] = str(ua)
        out["sys/class/power_supply/bms/voltage_now"] = str(uv)
        out["sys/class/power_supply/bms/temp"] = str(p.extra["temp"])
        return out


BOARDS: dict[str, Board] = {b.name: b for b in (JetsonOrin(), RaspberryPi5(), AndroidPhone())}
# timelines replayed over another board's tree (their `tree`): tests/lab/replay.py knows these too
VARIANTS: dict[str, Board] = {b.name: b for b in (RaspberryPi5Throttling(),)}


def write_file(root: Path, rel: str, text: str) -> None:
    """Write atomically (a reader sees the old or the new text, never half of one)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)


def build(board: Board, root: Path) -> None:
    """The tree of `board` at t = 0 under root (emptied first), with its PROVENANCE.md."""
    shutil.rmtree(root, ignore_errors=True)
    for rel, text in board.files(0.0).items():
        write_file(root, rel, text)
    for rel, text in board.executables().items():
        write_file(root, rel, text)
        path = root / rel
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    for rel, target in board.links().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    write_file(root, "PROVENANCE.md", board.provenance())


if __name__ == "__main__":
    for name, board in BOARDS.items():
        build(board, HERE / name)
        print(HERE / name)
