"""Energy from a power trace: trapezoidal integral over a phase window, minus the idle baseline.

A window needs at least two power samples inside it; with fewer the figure is empty with that
reason, never interpolated into existence. At the window's edges the integral is carried to the
edge by linear interpolation between the real samples either side of it (or held flat when the
window reaches the end of the trace).
"""

from __future__ import annotations

import statistics

from melt.analysis.trace import Trace

MIN_SAMPLES = 2


def _at(points: list[tuple[float, float]], t: float) -> float:
    """Value at time t by linear interpolation between the real samples around it (held at ends)."""
    if t <= points[0][0]:
        return points[0][1]
    if t >= points[-1][0]:
        return points[-1][1]
    lo, hi = 0, len(points) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if points[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, v0), (t1, v1) = points[lo], points[hi]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v0


def integrate(points: list[tuple[float, float]], t0: float, t1: float) -> tuple[float | None, str | None]:
    """Integral of a piecewise-linear signal over [t0, t1] (J for W, s)."""
    inside = [(t, v) for t, v in points if t0 <= t <= t1]
    if len(inside) < MIN_SAMPLES:
        return None, f"{len(inside)} power sample(s) in the {t1 - t0:.3f} s window; need {MIN_SAMPLES}"
    edge = [(t0, _at(points, t0)), *inside, (t1, _at(points, t1))]
    total = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(edge, edge[1:]))
    return total, None


def counter_delta(points: list[tuple[float, float]], t0: float, t1: float) -> tuple[float | None, str | None]:
    """Energy from a cumulative counter (J): its rise over [t0, t1]."""
    inside = [(t, v) for t, v in points if t0 <= t <= t1]
    if len(inside) < MIN_SAMPLES:
        return None, f"{len(inside)} counter sample(s) in the {t1 - t0:.3f} s window; need {MIN_SAMPLES}"
    return _at(points, t1) - _at(points, t0), None


def idle_baseline_w(trace: Trace, idle: tuple[float, float] | None) -> tuple[float | None, str | None]:
    if idle is None:
        return None, "no idle window (telemetry.idle_s = 0)"
    samples = [v for _, v in trace.window("power.total_w", *idle)]
    if len(samples) < MIN_SAMPLES:
        return None, f"{len(samples)} power sample(s) in the idle window; need {MIN_SAMPLES}"
    return statistics.median(samples), None


class PhaseEnergy:
    """Energy of phase windows from one trace: raw and with the idle baseline subtracted."""

    def __init__(self, trace: Trace, idle: tuple[float, float] | None):
        self.power = trace.series("power.total_w")
        self.counter = trace.series("energy.total_j")
        self.baseline_w, self.baseline_reason = idle_baseline_w(trace, idle)

    def window(self, t0: float, t1: float) -> dict:
        raw, why = integrate(self.power, t0, t1) if self.power else (None, "no power channel")
        out = {"t0_s": t0, "t1_s": t1, "duration_s": t1 - t0, "raw_j": raw}
        if self.counter:
            counted, why_counter = counter_delta(self.counter, t0, t1)
            out["counter_j"] = counted
            if counted is not None:
                raw, why = counted, None  # the device's own counter, where it has one
                out["raw_j"] = raw
                out["source"] = "energy counter"
            elif why_counter:
                out["counter_reason"] = why_counter
        if raw is None:
            out["reason"] = why
            out["net_j"] = None
        elif self.baseline_w is None:
            out["net_j"] = None
            out["reason"] = f"idle baseline unknown: {self.baseline_reason}"
        else:
            net = raw - self.baseline_w * (t1 - t0)
            # below double precision of the raw figure is rounding, not energy (constant power)
            out["net_j"] = 0.0 if abs(net) <= 1e-9 * abs(raw) else net
        return out
