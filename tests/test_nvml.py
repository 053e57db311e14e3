"""NVIDIA GPUs through NVML. The real nvidia-ml-py (a test dependency) on this machine, which has no NVIDIA
driver: the probe says why there is no GPU telemetry and the run goes on. Where a GPU is needed, the
stand-in pynvml (tests/lab/nvml) steps its power on a timeline and integrates it into its energy counter
with time, as NVML does; melt's energy figures and its counter-against-integral cross-check are checked
against the exact integral, with a counter that agrees and one that reads 25% high."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from conftest import run_melt, run_static_case

from melt.telemetry.nvml import NvmlProbe

STAND_IN = Path(__file__).resolve().parent / "lab" / "nvml"


def test_no_driver_with_the_real_nvidia_ml_py():
    """The installed pynvml is nvidia-ml-py's, and NVML's own error says why there is no GPU here."""
    import pynvml

    assert "site-packages" in pynvml.__file__ and STAND_IN not in Path(pynvml.__file__).parents
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:  # no driver: LibraryNotFound (no libnvidia-ml), DriverNotLoaded, ...
        why = f"NVML: {type(e).__name__}: {e}"
    else:  # a machine with a driver (the device machine): the probe must find its GPUs instead
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        det = NvmlProbe("/").detect()
        assert len(det.found) == count and det.power_method == ("nvml" if count else None)
        return
    probe = NvmlProbe("/")
    det = probe.detect()
    assert det.missing == [why] and det.channels == [] and det.power_method is None
    probe.close()
    proc = run_melt("devices", "probe", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sensors"]["probes"]["nvml"]["missing"] == [why]


def test_without_nvidia_ml_py_the_probe_says_which_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    det = NvmlProbe("/").detect()
    assert det.missing == ["pynvml (pip package nvidia-ml-py): not installed, no NVIDIA GPU telemetry"]


def stand_in(monkeypatch, t0: float, scale: float = 1.0):
    """The stand-in pynvml, imported fresh with its t0 and counter scale, as the sampler would import it."""
    monkeypatch.setenv("MELT_FAKE_NVML_T0", repr(t0))
    monkeypatch.setenv("MELT_FAKE_NVML_COUNTER_SCALE", str(scale))
    spec = importlib.util.spec_from_file_location("pynvml", STAND_IN / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def test_stand_in_counter_advances_with_time_not_reads(monkeypatch):
    nv = stand_in(monkeypatch, time.monotonic())
    probe = NvmlProbe("/")
    det = probe.detect()
    assert det.power_method == "nvml" and det.found == ["GPU 0: NVIDIA H100 80GB HBM3"]
    start = time.monotonic()
    reads = [probe.sample() for _ in range(200)]
    elapsed = time.monotonic() - start
    # 200 reads in `elapsed` seconds: the counter rose by what the GPU drew in that time, not per read
    assert 0 <= reads[-1]["energy.total_j"] - reads[0]["energy.total_j"] <= nv.LOAD_MW / 1e3 * elapsed + 0.002
    a = time.monotonic() - nv.T0
    before = probe.sample()
    time.sleep(0.3)
    after = probe.sample()
    b = time.monotonic() - nv.T0
    rose = after["energy.total_j"] - before["energy.total_j"]
    exact = (nv.energy_mj(b) - nv.energy_mj(a)) / 1e3  # J over [a, b], which holds both reads
    assert exact - nv.LOAD_MW / 1e3 * 0.01 <= rose <= exact + 0.002
    for values, t in ((before, a), (after, b)):  # NVML's units converted: mW -> W, the phase's own readings
        load = nv.in_load(t)
        assert values["gpu0.power_w"] == values["power.total_w"] == (312.5 if load else 95.0)
        assert values["temp.gpu0_c"] == (61 if load else 45) and values["gpu0.sm_freq_mhz"] == (1755 if load else 345)
        assert values["gpu0.util_pct"] == (97 if load else 0)
        assert values["throttle.gpu0"] == (1.0 if load else 0.0)  # sw thermal slowdown counts; "idle" alone not
    probe.close()


@pytest.mark.parametrize("scale", [1.0, 1.25], ids=["counter-agrees", "counter-25pct-high"])
def test_run_energy_from_the_counter_and_its_cross_check(tmp_path, models, monkeypatch, scale):
    """A run on this machine with the stand-in GPU. Every traced power and counter value is what the GPU
    showed when the probe read it (the stand-in logs each read); the counted window's energy is the counter's
    (scale x the exact integral); the cross-check integrates the sampled power, which must match the exact
    integral, so that its ratio shows the counter's scale.

    Bounds, from the sampling: the trace stamps a reading `delay` before it was taken (measured from the log);
    a power step between two samples `gap` apart costs the trapezoid at most its height x (gap / 2 + delay)
    inside the window, and height x (gap + delay) where the window's edge is interpolated across it; the
    counter at an edge is interpolated between two readings, off by at most the power x delay plus the step
    height x gap when a step lies between them."""
    t0 = time.monotonic()
    log = tmp_path / "nvml.log"
    for name, value in (("PYTHONPATH", str(STAND_IN)), ("MELT_FAKE_NVML_T0", repr(t0)),
                        ("MELT_FAKE_NVML_COUNTER_SCALE", str(scale)), ("MELT_FAKE_NVML_LOG", str(log))):  # fmt: skip
        monkeypatch.setenv(name, value)
    nv = stand_in(monkeypatch, t0, scale)
    device = tmp_path / "gpu.yaml"
    device.write_text(  # the agent starts from an allow-list: the profile passes the stand-in's settings
        "name: lab-gpu\nplatform: linux\ntransport: {kind: local}\nsensors: {root: /}\n"
        "env: [MELT_FAKE_NVML_T0, MELT_FAKE_NVML_COUNTER_SCALE, MELT_FAKE_NVML_LOG]\n"
    )
    case_dir = run_static_case(tmp_path, models, device, repetitions=5, min_duration_s=3.0, idle_s=0.5)
    metrics = json.loads((case_dir / "metrics.json").read_text())
    assert metrics["summary"]["power_method"] == "nvml"
    window, check = metrics["telemetry"]["counted_window"], metrics["telemetry"]["counter_cross_check"]
    agent = json.loads((case_dir / "agent.json").read_text())

    with (case_dir / "trace.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["power.total_w"]]
    reads = {"power": [], "energy": []}
    for line in log.read_text().splitlines():
        what, at = line.split()
        reads[what].append(t0 + float(at))
    assert len(reads["power"]) == len(reads["energy"]) == len(rows)  # one reading of each per sample
    stamps = [float(r["t_s"]) for r in rows]
    delay = max(e - t for t, e in zip(stamps, reads["energy"]))  # energy is read after power
    assert all(0 <= p - t <= e - t for t, p, e in zip(stamps, reads["power"], reads["energy"]))
    for r, p, e in zip(rows, reads["power"], reads["energy"]):  # NVML's mW and mJ, converted
        assert float(r["power.total_w"]) == nv.power_mw(p - t0) / 1e3
        counted = scale * (nv.energy_mj(e - t0) - nv.energy_mj(reads["energy"][0] - t0)) / 1e3
        assert float(r["energy.total_j"]) == pytest.approx(counted, abs=0.002, rel=1e-5)  # 6 digits, whole mJ

    step, cycle = (nv.LOAD_MW - nv.IDLE_MW) / 1e3, nv.LOAD_S + nv.IDLE_S
    edges_of_steps = [t0 + k * cycle + d for k in range(int((stamps[-1] - t0) / cycle) + 1) for d in (0, nv.LOAD_S)]

    def exact_j(x0: float, x1: float) -> float:
        return (nv.energy_mj(x1 - t0) - nv.energy_mj(x0 - t0)) / 1e3

    def bracket(x: float) -> tuple[float, float]:
        before = max((t for t in stamps if t <= x), default=stamps[0])
        return before, min((t for t in stamps if t > x), default=stamps[-1])

    def integral_bound(a: float, b: float) -> float:
        total = 0.0
        for x in edges_of_steps:
            lo, hi = bracket(x)
            if lo <= a <= hi or lo <= b <= hi:
                total += step * (hi - lo + delay)
            elif a < x < b:
                total += step * ((hi - lo) / 2 + delay)
        return total

    def counter_bound(a: float, b: float) -> float:
        total = 0.0
        for edge in (a, b):
            lo, hi = bracket(edge)
            stepped = any(lo - delay <= x <= hi + delay for x in edges_of_steps)
            total += scale * (nv.LOAD_MW / 1e3 * delay + (step * (hi - lo) if stepped else 0.0))
        return total

    assert window["source"] == "energy counter" and window["counter_j"] == window["raw_j"]
    a, b = window["t0_s"], window["t1_s"]
    assert window["raw_j"] == pytest.approx(scale * exact_j(a, b), abs=counter_bound(a, b))
    a, b = (ns / 1e9 for ns in agent["phases"]["trials"])
    assert sum(1 for x in edges_of_steps if a < x < b) >= 2, "the GPU's power steps inside the trials"
    assert check["integral_j"] == pytest.approx(exact_j(a, b), abs=integral_bound(a, b))
    assert check["counter_j"] == pytest.approx(scale * exact_j(a, b), abs=counter_bound(a, b))
    low = (exact_j(a, b) - integral_bound(a, b)) / (scale * exact_j(a, b) + counter_bound(a, b))
    high = (exact_j(a, b) + integral_bound(a, b)) / (scale * exact_j(a, b) - counter_bound(a, b))
    assert low <= check["ratio"] <= high
    assert high - low < 0.2  # tight enough that a counter 25% high shows: 1 is outside [low, high]
    assert (low <= 1.0 <= high) == (scale == 1.0)
