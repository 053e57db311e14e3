"""The machine's own speed, from melt.agent.reference_loop: drift within a case, and a difference between runs.

The agent times a fixed single-threaded loop right before and right after a case's trials (agent.json
"reference_loop": each repetition in M iterations/s, their medians, drift_pct, the method). Two uses:

- within a case, where the recipe sets telemetry.max_machine_drift_pct: the loop ran more than that slower or
  faster after the trials than before them, so the machine itself changed speed around them and the case is
  semivalid (a sustained case excepted: a device that throttles under load is what it measures). Off by
  default: on melt's 2-core CI VM, with nothing else running, 16 before/after pairs half a second apart drifted
  by -16% to +36% (median 6.2 M it/s, pairs' medians 5.6 to 8.5): the host's speed state changes faster than
  the trials, so there the rule would judge the host's second-to-second noise, not drift during the trials;
- between runs: a case's loop ran more than MACHINE_SPEED_PCT (15%) slower or faster than in the baseline
  (same method: the same Python), so a speed change between the two is as much the machine's as the build's
  and melt compare calls it inconclusive (melt.analysis.compare). 15% rather than less: on that VM the loop's
  own median of 10 moved by up to 10% between moments a second apart.
"""

from __future__ import annotations

import statistics

MACHINE_SPEED_PCT = 15.0


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


def speed_difference(base: list[dict], new: dict | None, limit_pct: float = MACHINE_SPEED_PCT) -> str:
    """Why a speed change between the baseline's case(s) and the new one may be the machine's, in words ("" when
    the loop's speeds agree within limit_pct, or cannot be set side by side). base: the baseline cases'
    "reference_loop" figures (None entries ignored); the baseline's speed is their median; only figures taken
    with the new case's method count."""
    if not new or not new.get("mops_s"):
        return ""
    same = [b["mops_s"] for b in base if b and b.get("mops_s") and b.get("method") == new.get("method")]
    if not same:
        return ""
    before = statistics.median(same)
    change = (new["mops_s"] / before - 1) * 100
    if abs(change) <= limit_pct:
        return ""
    return (
        f"the machine itself ran {abs(change):.0f}% {'slower' if change < 0 else 'faster'} in the new run than in "
        f"the baseline (melt's reference loop: {new['mops_s']:.1f} against {before:.1f} M it/s)"
    )
