"""The machine's own speed, from melt.agent.reference_loop: drift within a case, and a difference between runs.

The agent times a fixed single-threaded loop right before and right after a case's trials (agent.json
"reference_loop": each repetition in M iterations/s, their medians, drift_pct, the method). Two uses:

- within a case: the loop ran more than telemetry.max_machine_drift_pct (default 15%) slower or faster after the
  trials than before them: the machine itself changed speed while they ran, so the case is semivalid (a
  sustained case excepted: a device that throttles under load is what it measures);
- between runs: a case's loop ran more than MACHINE_SPEED_PCT (10%) slower or faster than in the baseline
  (same method: the same Python), so a speed change between the two is as much the machine's as the build's
  and melt compare calls it inconclusive (melt.analysis.compare).

The thresholds: the loop's median of 10 repetitions moved by 1-3% between back-to-back runs on a quiet
machine; a neighbour on the same physical core moves it by tens of percent.
"""

from __future__ import annotations

import statistics

DEFAULT_MAX_MACHINE_DRIFT_PCT = 15.0
MACHINE_SPEED_PCT = 10.0


def loop_figures(agent: dict) -> dict | None:
    """metrics.json's "reference_loop": {"mops_s", "before_mops_s", "after_mops_s", "drift_pct", "method",
    "before", "after"} as the agent measured it, or None where it did not (telemetry.reference_loop off, a case
    that failed before its trials ended, a device without melt's Python agent)."""
    loop = agent.get("reference_loop")
    return dict(loop) if isinstance(loop, dict) and loop.get("mops_s") else None


def drift_reason(loop: dict | None, max_drift_pct: float) -> str | None:
    """Why a case is semivalid for the machine's drift during its trials, or None."""
    drift = (loop or {}).get("drift_pct")
    if drift is None or abs(drift) <= max_drift_pct:
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
