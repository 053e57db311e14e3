"""Energy on synthetic power traces with known integrals; baseline subtraction; counters; probes
that need time (RAPL wrap-around) on trees written by the test."""

from __future__ import annotations

import math

import pytest

from melt.analysis.energy import PhaseEnergy, counter_delta, integrate
from melt.analysis.trace import Trace
from melt.telemetry.rapl import RaplProbe


def sampled(f, t0: float, t1: float, dt: float) -> list[tuple[float, float]]:
    n = int(round((t1 - t0) / dt))
    return [(t0 + i * dt, f(t0 + i * dt)) for i in range(n + 1)]


def test_integral_of_a_known_signal_within_one_percent():
    # P(t) = 5 + 2 sin(t): integral over [0.05, 9.93] is 5*9.88 + 2*(cos(0.05) - cos(9.93))
    points = sampled(lambda t: 5 + 2 * math.sin(t), 0.0, 10.0, 0.1)
    got, why = integrate(points, 0.05, 9.93)
    want = 5 * 9.88 + 2 * (math.cos(0.05) - math.cos(9.93))
    assert why is None and got == pytest.approx(want, rel=0.01)


def test_window_edges_are_carried_by_interpolation_between_real_samples():
    points = [(0.0, 0.0), (1.0, 10.0), (2.0, 10.0), (3.0, 0.0)]
    got, _ = integrate(points, 0.5, 2.5)  # 0.5..1: ramp 5->10, 1..2: 10, 2..2.5: ramp 10->5
    assert got == pytest.approx(3.75 + 10 + 3.75)


def test_fewer_than_two_samples_is_empty_with_a_reason():
    points = [(0.0, 4.0), (1.0, 4.0), (2.0, 4.0)]
    got, why = integrate(points, 0.2, 0.9)
    assert got is None and "0 power sample(s)" in why and "need 2" in why
    got, why = integrate(points, 0.5, 1.5)
    assert got is None and "1 power sample(s)" in why


def trace_of(power: list[tuple[float, float]], counter: list[tuple[float, float]] | None = None) -> Trace:
    t = [p[0] for p in power]
    columns = {"power.total_w": [p[1] for p in power]}
    if counter:
        columns["energy.total_j"] = [c[1] for c in counter]
    return Trace(t_s=t, columns=columns, sensors={"power_method": "test"})


def test_idle_baseline_is_subtracted():
    # 2 W idle for 3 s, then 7 W for 5 s
    power = sampled(lambda t: 2.0 if t < 3.0 else 7.0, 0.0, 8.0, 0.05)
    pe = PhaseEnergy(trace_of(power), idle=(0.0, 2.9))
    assert pe.baseline_w == 2.0
    w = pe.window(4.0, 8.0)
    assert w["raw_j"] == pytest.approx(28.0) and w["net_j"] == pytest.approx(20.0)


def test_constant_power_is_zero_net_energy_not_rounding_noise():
    power = sampled(lambda t: 4.1, 0.0, 6.0, 0.1)  # 0.1 steps: the integral is not exact in binary
    pe = PhaseEnergy(trace_of(power), idle=(0.0, 2.0))
    for t0, t1 in ((2.3, 5.7), (0.1, 5.9), (3.05, 3.95)):
        w = pe.window(t0, t1)
        assert w["raw_j"] == pytest.approx(4.1 * (t1 - t0)) and w["net_j"] == 0.0


def test_unknown_baseline_leaves_net_energy_empty():
    power = sampled(lambda t: 3.0, 0.0, 4.0, 0.1)
    pe = PhaseEnergy(trace_of(power), idle=None)
    w = pe.window(1.0, 3.0)
    assert w["raw_j"] == pytest.approx(6.0) and w["net_j"] is None and "idle baseline unknown" in w["reason"]


def test_device_counter_is_used_where_there_is_one():
    power = sampled(lambda t: 5.0, 0.0, 4.0, 0.1)
    counter = [(t, 100.0 + 5.5 * t) for t, _ in power]  # the counter says 5.5 W: it wins over the integral
    pe = PhaseEnergy(trace_of(power, counter), idle=(0.0, 1.0))
    w = pe.window(2.0, 4.0)
    assert w["source"] == "energy counter" and w["raw_j"] == pytest.approx(11.0)
    assert counter_delta(counter, 2.0, 4.0)[0] == pytest.approx(11.0)


def test_rapl_counter_wraps(tmp_path):
    dom = tmp_path / "sys/class/powercap/intel-rapl:0"
    dom.mkdir(parents=True)
    (dom / "name").write_text("package-0\n")
    (dom / "max_energy_range_uj").write_text("1000000\n")
    (dom / "energy_uj").write_text("900000\n")
    probe = RaplProbe(str(tmp_path))
    det = probe.detect()
    assert det.power_method == "rapl" and "energy.total_j" in det.channels
    (dom / "energy_uj").write_text("950000\n")
    assert probe.sample()["energy.total_j"] == pytest.approx(0.05)
    (dom / "energy_uj").write_text("20000\n")  # wrapped: +50000 to the top, +20000 after
    assert probe.sample()["energy.total_j"] == pytest.approx(0.12)
