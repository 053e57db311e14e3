"""The measurement protocol: warm-ups recorded apart, then counted trials until both the
repetition count and the minimum duration are met (or the cap is hit). With protocol.sustained_s, the
sustained protocol instead: after the warm-ups, counted trials back to back, with no pause, until one ends
that many seconds or more after the first began (or the cap is hit)."""

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


def _trial_end_ns(record: dict) -> int:
    """When a trial ended by its own stamps (its last token, its end), else now."""
    tokens = record.get("token_ns") or []
    return tokens[-1] if tokens else record.get("t_end_ns") or time.monotonic_ns()


def _sustained(runner: Runner, protocol: dict, write, out: IO[str]) -> dict:
    """Counted trials back to back until sustained_s has passed since the span began (monotonic clock, as the
    trials stamp theirs): a trial follows whenever the one before it ended, by its own stamp, before that time,
    so the last trial is the first to end at or after it. t_sustained_start_ns / _end_ns: the span's start (just
    before the first counted trial) and end (after the last)."""
    cap, warm = protocol["max_repetitions"], protocol["warmup"]
    start = time.monotonic_ns()
    deadline = start + int(protocol["sustained_s"] * 1e9)
    counted, counted_s, last_end = 0, 0.0, start
    while counted < cap and last_end < deadline:
        record = runner.trial(warm + counted)
        write({"trial": warm + counted, "warmup": False, **record})
        counted += 1
        counted_s += record["duration_s"]
        last_end = _trial_end_ns(record)
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
        if counted >= cap and last_end < deadline
        else "sustained_s elapsed",
    }
