"""The machine's own speed, from melt.agent.reference_loop: its figure, and its drift within a case.

The agent times a fixed single-threaded loop right before and right after a case's trials (agent.json
"reference_loop": each repetition in M iterations/s, their medians, drift_pct, the method). metrics.json keeps
it and summary.csv its median (`ref_loop_mops_s`). Where the recipe sets telemetry.max_machine_drift_pct, a
case whose loop ran more than that slower or faster after the trials than before them is semivalid: the
machine itself changed speed around them (a board's clock stepping down as it heats; a sustained case is
excepted, its slowing is what it measures). Off by default: on melt's 2-core CI VM, with nothing else running,
16 before/after pairs half a second apart drifted by -16% to +36% (pairs' medians 5.6 to 8.5 M it/s): that
host's speed changes faster than trials last, and the loop's edges sample that noise, not a drift.

Not used by melt compare, though that was its first purpose: set beside each speed change between runs (a
change called inconclusive where the loops differed by over 15%), it was tried with benchmarks/compare_noise.py
on that VM (benchmarks/outputs/compare_noise-20261130T201618Z.txt). The loops' case medians varied by +-18%
between identical runs, so a real 45% slowdown (the starved run) came out inconclusive, while the two A/A
pairs it should have explained (Silero latency +97% and -45%) had loops within 10% of their baselines.
"""

from __future__ import annotations


def loop_figures(agent: dict) -> dict | None:
    """metrics.json's "reference_loop": {"mops_s", "before_mops_s", "after_mops_s", "drift_pct", "method",
    "before", "after"} as the agent measured it, or None where it did not (telemetry.reference_loop off, a case
    that failed before its trials ended, a device without melt's Python agent)."""
    loop = agent.get("reference_loop")
    return dict(loop) if isinstance(loop, dict) and loop.get("mops_s") else None


def drift_reason(loop: dict | None, max_drift_pct: float | None) -> str | None:
    """Why a case is semivalid for the machine's drift around its trials, or None (also with no limit set)."""
    drift = (loop or {}).get("drift_pct")
    if drift is None or max_drift_pct is None or abs(drift) <= max_drift_pct:
        return None
    return (
        f"the machine's own speed changed by {drift:+.0f}% from before the trials to after them (melt's reference "
        f"loop: {loop['before_mops_s']:.1f} then {loop['after_mops_s']:.1f} M it/s; limit {max_drift_pct:g}%)"
    )
