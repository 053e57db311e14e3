"""The measurement protocol: warm-ups recorded apart, then counted trials until both the
repetition count and the minimum duration are met (or the cap is hit). With protocol.sustained_s, the
sustained protocol instead: after the warm-ups, counted trials back to back, with no pause, until that
many seconds have passed since the first began (or the cap is hit); the last one started is finished."""

from __future__ import annotations

import json
import time
from typing import IO, Protocol


class Runner(Protocol):
    """What a runtime offers the agent: load once, then run trials, each returning a raw record."""

    def load(self) -> dict: ...

    def trial(self, index: int) -> dict: ...  # must hold duration_s

    def close(self) -> None: ...


FLUSH_EVERY_S = 0.5  # trials are flushed at least this often, so a killed agent loses little


def run_trials(runner: Runner, protocol: dict, out: IO[str]) -> dict:
    """Run warm-ups then counted trials, writing one JSON line per trial; return what happened."""
    last_flush = time.monotonic()

    def write(record: dict) -> None:
        nonlocal last_flush
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        if time.monotonic() - last_flush >= FLUSH_EVERY_S:
            out.flush()
            last_flush = time.monotonic()

    for i in range(protocol["warmup"]):
        write({"trial": i, "warmup": True, **runner.trial(i)})
    if protocol.get("sustained_s"):
        return _sustained(runner, protocol, write, out)
    counted, counted_s = 0, 0.0
    reps, min_s, cap = protocol["repetitions"], protocol["min_duration_s"], protocol["max_repetitions"]
    while counted < cap and (counted < reps or counted_s < min_s):
        record = runner.trial(protocol["warmup"] + counted)
        write({"trial": protocol["warmup"] + counted, "warmup": False, **record})
        counted += 1
        counted_s += record["duration_s"]
    out.flush()
    met = counted >= reps and counted_s >= min_s
    return {
        "warmup_trials": protocol["warmup"],
        "counted_trials": counted,
        "counted_duration_s": counted_s,
        "stopped_because": "repetitions and min_duration_s met" if met else f"max_repetitions ({cap}) reached",
    }


def _sustained(runner: Runner, protocol: dict, write, out: IO[str]) -> dict:
    """Counted trials back to back until sustained_s has passed since the first began (monotonic clock, as the
    trials stamp theirs); a trial is started only before that time. t_sustained_start_ns / _end_ns: when the
    first counted trial began and the last ended (melt.analysis.sustained times throttling from the start)."""
    cap, warm = protocol["max_repetitions"], protocol["warmup"]
    start = time.monotonic_ns()
    deadline = start + int(protocol["sustained_s"] * 1e9)
    counted, counted_s = 0, 0.0
    while counted < cap and time.monotonic_ns() < deadline:
        record = runner.trial(warm + counted)
        write({"trial": warm + counted, "warmup": False, **record})
        counted += 1
        counted_s += record["duration_s"]
    end = time.monotonic_ns()
    out.flush()
    return {
        "warmup_trials": warm,
        "counted_trials": counted,
        "counted_duration_s": counted_s,
        "sustained_s": protocol["sustained_s"],
        "t_sustained_start_ns": start,
        "t_sustained_end_ns": end,
        "stopped_because": f"max_repetitions ({cap}) reached before sustained_s"
        if counted >= cap and end < deadline
        else "sustained_s elapsed",
    }
