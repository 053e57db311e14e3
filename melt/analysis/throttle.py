"""Whether a device throttled within a span of its trace: a throttle flag set, or a core's clock held under its
maximum while busy."""

from __future__ import annotations

from melt.analysis.trace import Trace

BUSY_UTIL_PCT = 50.0  # a core counts as busy above this utilisation
CAPPED_RATIO = 0.9  # and as held below max when its frequency is under 90% of its maximum for two intervals


def throttle_spans(trace: Trace, t0: float, t1: float) -> list[str]:
    """Why the device was throttled within [t0, t1] (trace seconds; empty: it was not, as far as its sensors
    tell): throttle_marks' reasons."""
    return [reason for reason, _times in throttle_marks(trace, t0, t1)]


def throttle_marks(trace: Trace, t0: float, t1: float) -> list[tuple[str, list[float]]]:
    """(why, the trace times it was seen) for each way the device showed throttling within [t0, t1]: a throttle.*
    flag set, or a cpu*.freq_mhz held under CAPPED_RATIO of its max_freq_mhz at both ends of two busy sampling
    intervals in a row (empty: it was not throttled)."""
    marks = []
    for channel in trace.channels("throttle."):
        times = [t for t, v in trace.window(channel, t0, t1) if v]
        if times:
            marks.append((f"{channel} set", times))
    util = dict(trace.window("cpu.util_pct", t0, t1))
    for freq_channel in trace.channels("cpu"):
        if not freq_channel.endswith(".freq_mhz") or freq_channel.endswith("max_freq_mhz"):
            continue
        top = dict(trace.window(freq_channel.replace(".freq_mhz", ".max_freq_mhz"), t0, t1))
        # utilisation covers the interval since the previous sample, a frequency is one instant: the clock must be
        # low at both ends of a busy interval, and over two such intervals in a row, since the probes read one
        # after another and a clock that drops as the load ends can fall between the /proc/stat and cpufreq reads
        low = [(t, t in top and f < CAPPED_RATIO * top[t]) for t, f in trace.window(freq_channel, t0, t1)]
        held = [(t, was and now and util.get(t, 0) >= BUSY_UTIL_PCT) for (_, was), (t, now) in zip(low, low[1:])]
        capped = [
            t for i, (t, h) in enumerate(held)
            if h and ((i > 0 and held[i - 1][1]) or (i + 1 < len(held) and held[i + 1][1]))
        ]  # fmt: skip
        if capped:
            marks.append((f"{freq_channel} under {CAPPED_RATIO:.0%} of max while busy ({len(capped)} samples)", capped))
    return marks
