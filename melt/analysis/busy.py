"""Was the machine busy with something else while the case was measured?

From the trace's CPU-time counters (melt/telemetry/procfs.py and the sh sampler: seconds since the
sampler started), over the windows that were measured (the counted trials):

- foreign_cpu_pct: CPU time used by processes other than the measured one and melt's own sampler,
  in % of one core: 100 x (busy - measured - sampler) / wall time. 38 means other processes kept
  0.38 of a core busy on average while the trials ran;
- steal_pct: time the hypervisor gave this machine's CPUs to another guest, in % of all CPU time
  (what `top` shows as %st): 100 x steal / total.

A counter is read at the last sample at or before a window's start and the first at or after its
end, so a window is never shorter than what was measured; windows whose bracketing intervals
overlap are merged so no CPU time is counted twice. The counters tick in USER_HZ units (10 ms), so
over a window of a second or two the figure is good to about a percent of a core; a small negative
result of that rounding is reported as 0.
"""

from __future__ import annotations

import bisect

from melt.analysis.trace import Trace

COUNTERS = ("cpu.busy_s", "cpu.steal_s", "cpu.total_s", "proc.cpu_s", "sampler.cpu_s")
DEFAULT_MAX_FOREIGN_CPU_PCT = 5.0  # of one core
DEFAULT_MAX_STEAL_PCT = 2.0  # of all CPU time


def _bracket(times: list[float], rows: list[int], t0: float, t1: float) -> tuple[int, int] | None:
    """The trace rows (indexes) of the last sample at or before t0 and the first at or after t1.
    times: the rows' times, ascending."""
    a = bisect.bisect_right(times, t0) - 1
    b = bisect.bisect_left(times, t1)
    if a < 0 or b >= len(times):
        return None
    return rows[a], rows[b]


def busy_figures(trace: Trace, windows: list[tuple[float, float]]) -> dict:
    """{"foreign_cpu_pct", "steal_pct", "wall_s", "windows", "why"}: figures None where they cannot be
    measured, with the reason in why[figure]. windows: (t0, t1) in trace seconds."""
    out: dict = {"foreign_cpu_pct": None, "steal_pct": None, "why": {}}
    missing = [c for c in ("cpu.busy_s", "proc.cpu_s") if not trace.series(c)]
    if missing:
        why = (
            "the measured process's CPU time is not in the trace (a recorded sensor tree, or a device "
            "whose /proc could not be read)"
            if "proc.cpu_s" in missing
            else "no /proc/stat counters in the trace"
        )
        out["why"]["foreign_cpu_pct"] = why
    if not trace.series("cpu.steal_s") or not trace.series("cpu.total_s"):
        out["why"]["steal_pct"] = "no /proc/stat steal counter in the trace"
    if len(out["why"]) == 2:
        return out
    cols = {c: trace.columns.get(c, [None] * len(trace.t_s)) for c in COUNTERS}
    rows = [i for i in range(len(trace.t_s)) if all(cols[c][i] is not None for c in ("cpu.busy_s", "cpu.total_s"))]
    times = [trace.t_s[i] for i in rows]
    spans = []
    for t0, t1 in sorted(windows):
        b = _bracket(times, rows, t0, t1)
        if b is None:
            continue
        if spans and b[0] <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b[1]))
        else:
            spans.append(b)
    if not spans:
        reason = "no samples before and after the trials (they were shorter than the sampling interval)"
        out["why"].setdefault("foreign_cpu_pct", reason)
        out["why"].setdefault("steal_pct", reason)
        return out

    def delta(channel: str) -> float | None:
        parts = [(cols[channel][b], cols[channel][a]) for a, b in spans]
        if any(x is None or y is None for x, y in parts):
            return None
        return sum(x - y for x, y in parts)

    wall = sum(trace.t_s[b] - trace.t_s[a] for a, b in spans)
    out["wall_s"] = wall
    out["windows"] = [[trace.t_s[a], trace.t_s[b]] for a, b in spans]
    busy, proc, own = delta("cpu.busy_s"), delta("proc.cpu_s"), delta("sampler.cpu_s")
    if "foreign_cpu_pct" not in out["why"] and busy is not None and proc is not None and wall > 0:
        foreign = busy - proc - (own or 0.0)
        out["cpu_s"] = {"busy": busy, "measured": proc, "sampler": own, "foreign": foreign}
        out["foreign_cpu_pct"] = max(0.0, 100.0 * foreign / wall)
    elif "foreign_cpu_pct" not in out["why"]:
        out["why"]["foreign_cpu_pct"] = "a CPU counter did not read at the trials' edges"
    steal, total = delta("cpu.steal_s"), delta("cpu.total_s")
    if "steal_pct" not in out["why"] and steal is not None and total:
        out["steal_pct"] = max(0.0, 100.0 * steal / total)
    elif "steal_pct" not in out["why"]:
        out["why"]["steal_pct"] = "a CPU counter did not read at the trials' edges"
    return out


def busy_reasons(figures: dict, max_foreign_cpu_pct: float, max_steal_pct: float) -> list[str]:
    """Why the case's figures may not be the machine's own: the validity reasons, as words."""
    reasons = []
    foreign, steal = figures.get("foreign_cpu_pct"), figures.get("steal_pct")
    if foreign is not None and foreign > max_foreign_cpu_pct:
        reasons.append(
            f"other processes used {foreign:.0f}% of a core during the trials (limit {max_foreign_cpu_pct:g}%)"
        )
    if steal is not None and steal > max_steal_pct:
        reasons.append(
            f"the hypervisor took {steal:.1f}% of CPU time (steal) during the trials (limit {max_steal_pct:g}%)"
        )
    return reasons
