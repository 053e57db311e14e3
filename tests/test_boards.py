"""The board trees (tests/lab/boards, written by make_boards.py from one model per board) as sensor roots
with transport local. First the trees themselves: every file agrees with the others and with the kernel's
units, and the committed tree is the model's t = 0 state. Then `melt devices probe` on them, and full
`melt run`s while tests/lab/replay.py moves the tree along its timeline: every traced value is what the
board showed at that time, CPU utilisation follows /proc/stat, and the energy figures match the exact
integral of the stepping power within a bound set by the sampling interval."""

from __future__ import annotations

import csv
import functools
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_trace, run_melt, run_static_case, write_recipe

from melt.analysis.throttle import throttle_spans
from melt.analysis.trace import Trace

LAB = Path(__file__).resolve().parent / "lab"
sys.path.insert(0, str(LAB))
from make_boards import BOARDS, ORIN_LINE, USER_HZ, pmic_total_w  # noqa: E402
from replay import replaying  # noqa: E402

TREES = LAB / "boards"
PROFILES = {
    "jetson-orin-nano": "platform: jetson\nsensors: {{root: {root}, tegrastats: /usr/bin/tegrastats}}\n",
    "raspberry-pi-5": "platform: raspberrypi\nsensors: {{root: {root}, vcgencmd: /usr/bin/vcgencmd}}\n",
    "android-phone": "platform: android\nsensors: {{root: {root}, battery: {{current_unit: uA}}}}\n",
}
# how long after a sample's stamp its total power is read (at most): sysfs files as the tick starts, unless the
# sampler is preempted there; the Pi's PMIC through a third vcgencmd process after measure_temp and get_throttled
READ_S = {"jetson-orin-nano": 0.05, "raspberry-pi-5": 0.3, "android-phone": 0.05}
# board -> (power method, hottest zone C over the timeline, throttled, zone types that must be dropped)
EXPECTED = {
    "jetson-orin-nano": ("ina3221", 65.562, False, set()),
    "raspberry-pi-5": ("pmic", 48.3, True, set()),
    "android-phone": ("battery", 41.2, False, {"xo_therm_adc"}),
}


def read(files: dict[str, str], rel: str) -> float:
    return float(files[rel].split()[0])


def zone_c(files: dict[str, str], board, kind: str) -> float:
    return read(files, f"sys/class/thermal/thermal_zone{board.zones.index(kind)}/temp") / 1000  # millidegrees


def khz(files: dict[str, str], policy: int) -> float:
    return read(files, f"sys/devices/system/cpu/cpufreq/policy{policy}/scaling_cur_freq")


ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"


def orin_rail_w(files: dict[str, str], n: int) -> float:
    return read(files, f"{ORIN_HWMON}/in{n}_input") * read(files, f"{ORIN_HWMON}/curr{n}_input") / 1e6  # mV x mA


# channel -> what the board's files at that time say it is, in melt's units
CHANNELS = {
    "jetson-orin-nano": {
        "power.vdd_in_w": lambda f, b: orin_rail_w(f, 1),
        "power.vdd_soc_w": lambda f, b: orin_rail_w(f, 3),
        "gpu.util_pct": lambda f, b: read(f, "sys/class/devfreq/17000000.ga10b/device/load") / 10,
        "gpu.freq_mhz": lambda f, b: read(f, "sys/class/devfreq/17000000.ga10b/cur_freq") / 1e6,
        "temp.cpu_thermal_c": lambda f, b: zone_c(f, b, "cpu-thermal"),
        "temp.tj_thermal_c": lambda f, b: zone_c(f, b, "tj-thermal"),
        "cpu0.freq_mhz": lambda f, b: khz(f, 0) / 1000,
        "cpu4.freq_mhz": lambda f, b: khz(f, 4) / 1000,
        "cpu4.max_freq_mhz": lambda f, b: 1984.0,
        "emc.util_pct": lambda f, b: float(re.search(r"EMC_FREQ (\d+)%", f["usr/share/melt/tegrastats.txt"])[1]),
        "mem.used_mb": lambda f, b: (read_kb(f, "MemTotal") - read_kb(f, "MemAvailable")) / 1024,
    },
    "raspberry-pi-5": {
        "temp.soc_c": lambda f, b: round(zone_c(f, b, "cpu-thermal"), 1),
        "temp.cpu_thermal_c": lambda f, b: zone_c(f, b, "cpu-thermal"),
        "power.vdd_core_w": lambda f, b: pmic_rail_w(f["usr/share/melt/pmic_read_adc.txt"], "VDD_CORE"),
        "throttle.pi_now": lambda f, b: float(int(f["usr/share/melt/get_throttled.txt"].split("=")[1], 16) & 0xE > 0),
        "cpu0.freq_mhz": lambda f, b: khz(f, 0) / 1000,
    },
    "android-phone": {
        "battery.current_a": lambda f, b: -read(f, "sys/class/power_supply/bms/current_now") / 1e6,  # uA, < 0: out
        "battery.voltage_v": lambda f, b: read(f, "sys/class/power_supply/bms/voltage_now") / 1e6,  # uV
        "battery.temp_c": lambda f, b: read(f, "sys/class/power_supply/bms/temp") / 10,  # tenths of a degree
        "battery.charging": lambda f, b: 0.0,
        "temp.battery_c": lambda f, b: zone_c(f, b, "battery"),
        "cpu4.freq_mhz": lambda f, b: khz(f, 4) / 1000,
    },
}


def read_kb(files: dict[str, str], key: str) -> float:
    return float(re.search(rf"^{key}:\s+(\d+) kB$", files["proc/meminfo"], re.M)[1])


def pmic_rail_w(text: str, rail: str) -> float:
    amps = float(re.search(rf"{rail}_A current\(\d+\)=([\d.]+)A", text)[1])
    volts = float(re.search(rf"{rail}_V volt\(\d+\)=([\d.]+)V", text)[1])
    return amps * volts


def stat_ticks(files: dict[str, str]) -> dict[str, list[int]]:
    return {line.split()[0]: [int(v) for v in line.split()[1:]] for line in files["proc/stat"].splitlines()
            if line.startswith("cpu")}  # fmt: skip


# --- the trees agree with themselves -----------------------------------------------------------------

SOME_TIMES = [0.0, 0.31, 0.69, 0.75, 1.2, 1.99, 2.5, 7.3]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_committed_tree_is_the_models_t0_state(name):
    board, root = BOARDS[name], TREES / name
    for rel, text in board.files(0.0).items():
        assert (root / rel).read_text() == (text if text.endswith("\n") else text + "\n"), rel
    for rel, text in board.executables().items():
        assert (root / rel).read_text() == text and (root / rel).stat().st_mode & 0o111, rel
    for rel, target in board.links().items():
        assert (root / rel).is_symlink() and str((root / rel).readlink()) == target
    assert (root / "PROVENANCE.md").read_text() == board.provenance()
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    expected = {*board.files(0.0), *board.executables(), "PROVENANCE.md"}
    assert written - expected == set(), "files in the tree that the model does not write"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_core_counts_memory_and_units_agree(name):
    board = BOARDS[name]
    for t in SOME_TIMES:
        f = board.files(t)
        cores = len(re.findall(r"^processor\s*:", f["proc/cpuinfo"], re.M))
        in_policies = sorted(int(c) for n in board.policies for c in f[f"sys/devices/system/cpu/cpufreq/policy{n}/"
                                                                          "affected_cpus"].split())  # fmt: skip
        ticks = stat_ticks(f)
        assert cores == board.cpus == len(in_policies) == len(ticks) - 1 and in_policies == list(range(cores))
        assert f["sys/devices/system/cpu/online"] == f"0-{cores - 1}"
        assert ticks["cpu"] == [sum(col) for col in zip(*(ticks[f"cpu{c}"] for c in range(cores)))]
        for c in range(cores):  # each CPU's ticks add up to the time it has been up, in USER_HZ ticks
            assert abs(sum(ticks[f"cpu{c}"]) - (3 * 3600 + t) * USER_HZ) <= 2
        for n in board.policies:  # kHz, within the policy's limits
            lo = read(f, f"sys/devices/system/cpu/cpufreq/policy{n}/cpuinfo_min_freq")
            hi = read(f, f"sys/devices/system/cpu/cpufreq/policy{n}/cpuinfo_max_freq")
            assert 100_000 <= lo <= khz(f, n) <= hi <= 3_000_000
        temps = [zone_c(f, board, z) for z in board.zones if "xo-therm" not in z]
        assert all(20 <= c <= 90 for c in temps)  # millidegrees in the files
        assert read_kb(f, "MemAvailable") == read_kb(f, "MemFree") + read_kb(f, "Buffers") + read_kb(f, "Cached")
        assert 0 < read_kb(f, "MemAvailable") < read_kb(f, "MemTotal")


def test_orin_tegrastats_is_the_sysfs_state():
    """What tegrastats prints is what it reads: INA3221 mV x mA, thermal zones, devfreq, /proc/meminfo, cpufreq;
    the load phase prints the recorded line (but for its date and running averages)."""
    board = BOARDS["jetson-orin-nano"]
    for t in SOME_TIMES:
        f = board.files(t)
        line = f["usr/share/melt/tegrastats.txt"]
        for n, rail in enumerate(("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"), 1):
            mw = int(re.search(rf"{rail} (\d+)mW/", line)[1])
            assert mw == int(orin_rail_w(f, n) * 1000), rail  # 17.9 W in both, never 9.3 against 17.9
            assert 4900 <= read(f, f"{ORIN_HWMON}/in{n}_input") <= 5200  # mV
            assert read(f, f"{ORIN_HWMON}/in{n + 3}_input") == read(f, f"{ORIN_HWMON}/curr{n}_input") * 5  # uV
        used, total = map(int, re.search(r"RAM (\d+)/(\d+)MB", line).groups())
        assert (
            total == read_kb(f, "MemTotal") / 1024
            and used == (read_kb(f, "MemTotal") - read_kb(f, "MemAvailable")) / 1024
        )
        for zone, celsius in re.findall(r"(\w+)@([\d.]+)C", line):
            assert float(celsius) == zone_c(f, board, f"{zone}-thermal"), zone
        gpu = re.search(r"GR3D_FREQ (\d+)%@\[(\d+)\]", line)
        assert int(gpu[1]) == read(f, "sys/class/devfreq/17000000.ga10b/device/load") // 10
        assert int(gpu[2]) == read(f, "sys/class/devfreq/17000000.ga10b/cur_freq") / 1e6
        cores = re.findall(r"(\d+)%@(\d+)", re.search(r"CPU \[([^\]]*)\]", line)[1])
        assert len(cores) == board.cpus
        for c, (_, mhz) in enumerate(cores[:5]):  # core 5's 247 MHz is the recording's own (PROVENANCE.md)
            assert int(mhz) == khz(f, 0 if c < 4 else 4) // 1000
    # the loads it prints are the /proc/stat deltas over a stretch of one phase
    a, b = board.files(board.t_of(1, 0.05)), board.files(board.t_of(1, 1.25))  # within one load phase
    load = [100 * (sum(y) - y[3] - y[4] - (sum(x) - x[3] - x[4])) / (sum(y) - sum(x))
            for x, y in ((stat_ticks(a)[f"cpu{c}"], stat_ticks(b)[f"cpu{c}"]) for c in range(6))]  # fmt: skip
    cores_b = re.search(r"CPU \[([^\]]*)\]", b["usr/share/melt/tegrastats.txt"])[1]
    printed = [int(p) for p, _ in re.findall(r"(\d+)%@(\d+)", cores_b)]
    assert load == pytest.approx(printed, abs=1.0)
    held = board.files(board.t_of(1, 1.0))["usr/share/melt/tegrastats.txt"]  # load phase, temperatures reached
    mask = re.compile(r"^\S+ \S+ |(?<=mW/)\d+")
    assert mask.sub("", held) == mask.sub("", ORIN_LINE)


def test_pi_and_phone_tools_agree_with_sysfs():
    pi = BOARDS["raspberry-pi-5"]
    for t in SOME_TIMES:
        f = pi.files(t)
        assert f["usr/share/melt/measure_temp.txt"] == f"temp={zone_c(f, pi, 'cpu-thermal'):.1f}'C"
        assert pmic_total_w(f["usr/share/melt/pmic_read_adc.txt"]) == pi.power_w(t)
    assert pi.files(pi.t_of(1, 0.5))["usr/share/melt/pmic_read_adc.txt"].startswith(
        " 3V7_WL_SW_A current(0)=0.05855580A"
    )
    phone = BOARDS["android-phone"]
    for t in SOME_TIMES:
        f = phone.files(t)
        watts = -read(f, "sys/class/power_supply/bms/current_now") * read(f, "sys/class/power_supply/bms/voltage_now")
        assert watts / 1e12 == pytest.approx(phone.power_w(t))
    assert (
        phone.files(phone.t_of(1, 0.5))["sys/class/power_supply/bms/current_now"] == "-1202147"
    )  # the recorded reading


def test_power_changes_and_its_integral_is_exact():
    for board in BOARDS.values():
        levels = {round(board.power_w(t), 6) for t in SOME_TIMES}
        assert len(levels) == 2
        # the integral over whole cycles is the phases' power x time; over any stretch, the sum of its pieces
        cycle = sum(board.phase_power_w(p) * p.seconds for p in board.phases)
        assert board.energy_j(0.0, 3 * board.cycle_s) == pytest.approx(3 * cycle)
        assert board.energy_j(0.1, 4.7) == pytest.approx(board.energy_j(0.1, 2.0) + board.energy_j(2.0, 4.7))


def test_the_replay_ends_with_the_test_that_started_it(tmp_path):
    """Killed when its block ends; and when the test process dies without cleaning up, it exits by itself."""

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
        except OSError:
            return True

    with replaying("raspberry-pi-5", tmp_path / "a") as replay:
        assert replay.proc.poll() is None
    assert replay.proc.poll() is not None
    code = (
        f"import sys, time; sys.path.insert(0, {str(LAB)!r}); from replay import replaying; from pathlib import Path\n"
        f"with replaying('raspberry-pi-5', Path({str(tmp_path / 'b')!r})) as r:\n"
        "    print(r.proc.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    assert not gone(pid)
    parent.kill()  # no finally runs: the replay is left without its test
    parent.wait()
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(pid)


# --- probe and run ------------------------------------------------------------------------------------


def profile(tmp_path: Path, board: str, root: Path | None = None) -> Path:
    path = tmp_path / f"{board}.yaml"
    body = PROFILES[board].format(root=root or TREES / board)
    path.write_text(f"name: lab-{board}\ntransport: {{kind: local}}\n{body}")
    return path


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_probe_finds_the_board_sensors(tmp_path, board):
    method, _, _, dropped = EXPECTED[board]
    proc = run_melt("devices", "probe", profile(tmp_path, board), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    sensors = report["sensors"]
    assert sensors["power_method"] == method and sensors["power_total"] == "power.total_w"
    assert set(CHANNELS[board]) <= set(sensors["channels"]) and "cpu.util_pct" in sensors["channels"]
    assert not [c for c in sensors["channels"] if any(d in c for d in dropped)]  # offline or absurd zones
    text = run_melt("devices", "probe", profile(tmp_path, board))
    assert f"power method {method}" in text.stdout and "not found:" in text.stdout


def within_what_the_board_showed(board, replay, channel, expect, samples, before_s, after_s):
    """Each sample's value is what the files said at some moment in [t - before_s, t + after_s]: a file is
    rewritten every replay tick and a tool prints its line every interval (so a reading can be that stale),
    and the sampler stamps t before its probes read (so a reading can be that much later)."""
    for t_s, value in samples:
        t = replay.t(t_s)
        steps = range(-int(after_s / 0.005) - 1, int(before_s / 0.005) + 2)
        seen = [expect(state(board.name, t - k * 0.005), board) for k in steps]
        margin = 1e-5 * max(abs(value), 1.0)  # trace.csv keeps 6 significant digits
        assert min(seen) - margin <= value <= max(seen) + margin, (channel, round(t, 3), value, min(seen), max(seen))


@functools.lru_cache(maxsize=65536)
def _state(name: str, t: float) -> dict[str, str]:
    return BOARDS[name].files(t)


def state(name: str, t: float) -> dict[str, str]:
    return _state(name, max(0.0, round(t, 4)))


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_run_on_a_replayed_board(tmp_path, models, board):
    method, temp_max, throttled, _ = EXPECTED[board]
    model = BOARDS[board]
    with replaying(board, tmp_path / "tree") as replay:
        device = profile(tmp_path, board, replay.root)
        case_dir = run_static_case(tmp_path, models, device, repetitions=5, min_duration_s=2.5, idle_s=0.5)
        lags, stale = replay.boundary_lags(), replay.write_gap() + 0.02
    run_dir = case_dir.parents[1]
    trace = read_trace(case_dir)
    assert len(trace["t_s"]) >= 20 and trace["t_s"] == sorted(trace["t_s"])
    for channel, expect in CHANNELS[board].items():
        samples = trace_samples(case_dir, channel)
        assert samples, channel
        tool = channel in ("emc.util_pct", "temp.soc_c", "power.vdd_core_w", "throttle.pi_now")
        within_what_the_board_showed(model, replay, channel, expect, samples, stale + (0.2 if tool else 0.0), 0.5)
    check_power(model, replay, trace_samples(case_dir, "power.total_w"), lags, READ_S[board])
    assert len({round(v, 3) for _, v in trace_samples(case_dir, "power.total_w")}) >= 2  # it steps

    metrics = json.loads((case_dir / "metrics.json").read_text())
    agent = json.loads((case_dir / "agent.json").read_text())
    s, tele = metrics["summary"], metrics["telemetry"]
    assert s["power_method"] == method
    assert s["temp_max_c"] == pytest.approx(temp_max, abs=0.06)
    assert s["throttled"] is throttled, tele.get("throttle_reasons")
    check_cpu_utilisation(model, replay, case_dir, agent, stale)
    check_energy(model, replay, case_dir, metrics, agent, lags, READ_S[board])
    with (run_dir / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["power_method"] == method and row["throttled"] == str(throttled).lower()


def trace_samples(case_dir: Path, channel: str) -> list[tuple[float, float]]:
    with (case_dir / "trace.csv").open(newline="") as f:
        return [(float(r["t_s"]), float(r[channel])) for r in csv.DictReader(f) if r.get(channel)]


def check_power(board, replay, samples, lags, read_s) -> None:
    """power.total_w at each sample is one of the levels the board showed from a step's write lag before
    the sample's stamp to read_s after it (the time its probe takes to come to the power files)."""
    worst = max((w - d for d, w in lags), default=0.0) + 0.01
    for t_s, value in samples:
        t = replay.t(t_s)
        levels = [
            board.power_w(max(0.0, t + k * 0.005)) for k in range(-int(worst / 0.005) - 1, int(read_s / 0.005) + 2)
        ]
        assert any(value == pytest.approx(level, rel=1e-5) for level in levels), (round(t, 3), value, levels)


def check_cpu_utilisation(board, replay, case_dir: Path, agent: dict, stale: float) -> None:
    """cpu.util_pct is present and follows the replayed /proc/stat: per sample within the utilisations of
    the phases its interval spans (give or take a USER_HZ tick per CPU on the busy and on the total count),
    and over the trials the busy share of cpu.busy_s / cpu.total_s is the exact time-weighted mean of the
    phases'. `stale`: how old a /proc/stat read can have been (the replay's longest gap between rewrites)."""
    util = trace_samples(case_dir, "cpu.util_pct")
    total = dict(trace_samples(case_dir, "cpu.total_s"))
    busy = dict(trace_samples(case_dir, "cpu.busy_s"))
    assert len(util) >= 20
    times = sorted(total)
    for (t_s, value), before in zip(util, [None, *[t for t, _ in util][:-1]]):
        if before is None or t_s not in total or before not in total or total[t_s] <= total[before]:
            continue
        a, b = replay.t(before) - stale, replay.t(t_s)
        spanned = [board.util_pct(a + k * (b - a) / 20) for k in range(21)]
        # whole ticks: the busy and the total count of each CPU can each be a tick off, in %
        tick = 2 * 100 * board.cpus / USER_HZ / (total[t_s] - total[before])
        assert min(spanned) - tick - 0.5 <= value <= max(spanned) + tick + 0.5, (round(b, 3), value, spanned)
    assert max(v for _, v in util) - min(v for _, v in util) > 30  # it moves with the load
    t0, t1 = (ns / 1e9 for ns in agent["phases"]["trials"])
    inside = [t for t in times if t0 <= t <= t1]
    first, last = inside[0], inside[-1]
    share = (busy[last] - busy[first]) / (total[last] - total[first])
    a, b = replay.t(first), replay.t(last)
    expected = (sum(board.busy_s(b)) - sum(board.busy_s(a))) / (board.cpus * (b - a))
    assert share == pytest.approx(expected, abs=2 * stale / (b - a) + 0.01)  # each end's file up to `stale` old
    # and cpu.util_pct is that share, sample by sample: weighted by each interval's ticks, its mean is the same
    after = [(t, v) for t, v in util if first < t <= last and t in total]
    steps = [total[t] - total[max(x for x in times if x < t)] for t, _ in after]
    weighted = sum(v * w for (_, v), w in zip(after, steps)) / sum(steps) / 100
    assert weighted == pytest.approx(share, abs=0.005)  # trace.csv keeps 6 digits


def check_energy(board, replay, case_dir: Path, metrics: dict, agent: dict, lags, read_s: float) -> None:
    """The counted window's energy against the exact integral of the replayed power.

    Bound: power is constant between steps, so the trapezoid rule is exact there. A step between two samples
    `gap` apart costs at most its height x gap / 2 inside the window, and up to height x gap where the window's
    edge is interpolated across it; the files show the step `lag` after it is due (the replay logs it) and the
    probe reads them up to read_s after the sample's stamp, each worth at most height x that time. So
    |raw - exact| <= the sum over the steps near the window of height x (gap / 2 or gap, + lag + read_s)."""
    window, s = metrics["telemetry"]["counted_window"], metrics["summary"]
    t = [t for t, _ in trace_samples(case_dir, "power.total_w")]
    a, b = replay.t(window["t0_s"]), replay.t(window["t1_s"])
    stamps = [replay.t(x) for x in t]
    lag_of = {round(d, 6): w - d for d, w in lags}

    def step_bound(x: float) -> float:
        lo = max((y for y in stamps if y <= x), default=stamps[0])
        hi = min((y for y in stamps if y > x), default=stamps[-1])
        at_edge = lo <= a <= hi or lo <= b <= hi
        if not at_edge and not a < x < b:
            return 0.0
        height = abs(board.power_w(x + 1e-6) - board.power_w(x - 1e-6))
        return height * ((hi - lo) * (1.0 if at_edge else 0.5) + lag_of.get(round(x, 6), 0.05) + read_s)

    steps = board.boundaries(max(0.0, a - 1.0), b + 1.0)
    assert [x for x in steps if a < x < b], "the power steps inside the counted window"
    bound = sum(step_bound(x) for x in steps)
    exact = board.energy_j(a, b)
    assert abs(window["raw_j"] - exact) <= bound, (window["raw_j"], exact, bound)
    if read_s <= 0.05:  # a sysfs total, read as the tick starts: the bound is tight enough to mean something
        assert bound < 0.25 * exact
    # the idle baseline: the median power of the idle window's samples, as the board showed them
    i0, i1 = (ns / 1e9 for ns in agent["phases"]["idle"])
    worst = max((w - d for d, w in lags), default=0.0) + 0.01
    idle = [replay.t(x) for x in t if i0 <= x <= i1]
    around = [[board.power_w(max(0.0, x - worst)), board.power_w(x), board.power_w(x + read_s)] for x in idle]
    low = statistics.median(min(p) for p in around)
    high = statistics.median(max(p) for p in around)
    baseline = metrics["telemetry"]["idle_baseline_w"]
    assert low * (1 - 1e-5) <= baseline <= high * (1 + 1e-5)  # trace.csv keeps 6 significant digits
    assert window["net_j"] == pytest.approx(window["raw_j"] - baseline * window["duration_s"])
    assert abs(window["net_j"] - (exact - baseline * (b - a))) <= bound
    assert s["energy_j"] == pytest.approx(window["net_j"] / s["n_trials"])
    assert s["power_avg_w"] == pytest.approx(window["net_j"] / window["duration_s"])
    # the window is the counted trials' span, on the clock the replay runs on
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines()]
    counted = [x for x in trials if not x.get("warmup")]
    assert window["t0_s"] == pytest.approx(counted[0]["t_start_ns"] / 1e9, abs=1e-6)
    assert window["t1_s"] == pytest.approx(counted[-1]["t_end_ns"] / 1e9, abs=1e-6)


def test_throttled_needs_the_clock_held_low_across_busy_intervals():
    """A core counts as held back when busy (utilisation over the interval since the previous sample) and under
    90% of its maximum at both ends of that interval, two intervals in a row; a clock that drops as the load
    ends, or one reading that fell between the /proc/stat and the cpufreq read, is not throttling."""
    t = [0.05 * i for i in range(12)]
    max_mhz = [1984.0] * 12

    def spans(util, freq):
        return throttle_spans(Trace(t_s=t, columns={"cpu.util_pct": util, "cpu0.freq_mhz": freq,
                                                    "cpu0.max_freq_mhz": max_mhz}), 0.0, 1.0)  # fmt: skip

    assert spans([95.0] * 6 + [60.0] + [5.0] * 5, [1984.0] * 6 + [729.6] * 6) == []  # drops as the load ends
    assert spans([95.0] * 7 + [60.0] + [5.0] * 4, [1984.0] * 6 + [729.6] * 6) == []  # read between the two
    held = spans([95.0] * 12, [1984.0] * 4 + [1200.0] * 8)
    assert held == ["cpu0.freq_mhz under 90% of max while busy (7 samples)"]
    assert spans([95.0] * 12, [1984.0] * 4 + [1200.0] * 2 + [1984.0] * 6) == []  # one busy interval held low
    assert spans([95.0] * 12, [1984.0] * 4 + [1200.0] * 3 + [1984.0] * 5) != []  # two in a row


def test_short_windows_are_empty_with_the_reason(tmp_path, models):
    """A request shorter than two sampling intervals gets no energy figure: never interpolated."""
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(
        tmp_path,
        """
        name: short
        models:
          - id: tiny
            runtime: llama_cpp
            source: {path: tiny.gguf}
            workload: {prompt_tokens: 8, n_gen: 4}
            params: {threads: 1, n_ctx: 128}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0}
        telemetry: {interval_ms: 250, idle_s: 0.6}
        """,
    )
    proc = run_melt(
        "run", recipe, "-d", profile(tmp_path, "jetson-orin-nano"), "--results", tmp_path / "r", "--run-id", "s"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "s" / "cases").iterdir()
    metrics = json.loads((case_dir / "metrics.json").read_text())
    for column in ("energy_j", "energy_prefill_j", "energy_decode_j", "j_per_token", "power_avg_w"):
        assert metrics["summary"][column] is None
        assert "need 2" in metrics["missing"][column], metrics["missing"][column]
    assert metrics["summary"]["power_method"] == "ina3221"
