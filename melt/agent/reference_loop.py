"""The machine's own speed around a case's trials: a fixed loop of single-threaded integer work, timed.

Why: on a virtual machine, a co-tenant on the same physical core (SMT), the host's clock and its scheduler change
how fast the same code runs, by up to twofold within minutes, and nothing inside the guest shows it: no other
process's CPU time, no steal. On melt's 2-core CI VM, identical runs of the same recipe read 49% slower and 100%
slower (benchmarks/compare_noise.py), and a plain Python loop pinned to one CPU took 0.19 to 0.36 s from one run
to the next. A fixed amount of work timed right before and right after the trials shows how fast the machine
itself ran around them: a board's clock stepping down as it heats shows as a slower loop after the trials
(melt.analysis.machine_speed says what melt does with it, and why it is not set beside changes between runs).

The work is a linear congruential step per iteration (x = (a*x + i) mod 2**31, the constants of C's rand()): it
stays in registers and the interpreter's own code, so it measures the core's speed, not the memory's. It runs
outside the trials, when the runtime's threads are idle (one still spinning down slows a repetition or two,
which the median ignores). Its speed depends on the Python that runs it: `method` names the implementation and
version, so figures from different Pythons are not read as a change of the machine.

Standard library only (device-side code).
"""

from __future__ import annotations

import platform
import statistics
import time

ITERATIONS = 100_000  # ~5 ms on a 2020s x86 core in CPython 3.12: short beside a case, long beside a timer tick
REPETITIONS = 10  # each side: the median of 10 shrugs off one preempted repetition


def _loop(n: int) -> int:
    x = 1
    for i in range(n):
        x = (1103515245 * x + i) & 0x7FFFFFFF
    return x


def method() -> str:
    """How the figures were taken; two runs' figures compare only where this is the same."""
    return (
        f"{ITERATIONS} iterations of an integer LCG loop, single-threaded, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def measure(repetitions: int = REPETITIONS, iterations: int = ITERATIONS) -> list[float]:
    """Speed of each repetition of the loop, in millions of iterations per second (M it/s), in the order run."""
    rates = []
    for _ in range(repetitions):
        t0 = time.perf_counter_ns()
        _loop(iterations)
        rates.append(iterations * 1e3 / max(time.perf_counter_ns() - t0, 1))
    return rates


def summary(before: list[float], after: list[float]) -> dict:
    """{"mops_s": median of every repetition, "before_mops_s", "after_mops_s": each side's median,
    "drift_pct": (after / before - 1) x 100, "method"}; figures None where a side has none."""
    both = before + after
    b = statistics.median(before) if before else None
    a = statistics.median(after) if after else None
    return {
        "mops_s": statistics.median(both) if both else None,
        "before_mops_s": b,
        "after_mops_s": a,
        "drift_pct": (a / b - 1) * 100 if a and b else None,
        "method": method(),
    }
