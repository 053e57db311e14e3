"""Regression verdicts: time blocks, the run-to-run noise, Holm's correction, verdicts on synthetic
samples with known differences, and the JUnit XML and markdown a CI system reads. The simulated
A/A study is in test_compare_noise.py."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from scipy import stats

from melt.analysis.compare import CaseData, compare
from melt.analysis.significance import DEFAULT_BLOCKS, RunLevel, difference_p, holm, run_level, run_noise
from melt.report.verdicts import to_junit, to_markdown, to_text


def test_blocks_see_the_drift_within_a_run_that_independent_trials_hide():
    rng = np.random.default_rng(4)
    n = 4000
    iid = np.exp(rng.normal(0, 0.1, n))
    drift = np.zeros(n)  # AR(1): neighbouring trials share the machine's state
    for t in range(1, n):
        drift[t] = 0.995 * drift[t - 1] + rng.normal(0, 0.01)
    drifting = np.exp(drift + rng.normal(0, 0.1, n))
    calm, wandering = run_level(list(iid)), run_level(list(drifting))
    naive = 1.2533 * np.std(np.log(drifting)) / np.sqrt(n)  # se of a median if trials were independent
    assert calm.blocks == wandering.blocks == DEFAULT_BLOCKS
    assert calm.se == pytest.approx(1.2533 * 0.1 / np.sqrt(n), rel=0.6)  # iid: blocks agree with theory
    assert wandering.se > 4 * naive  # drift: the run's median is far less certain than n trials suggest
    assert run_level([1.0, 2.0, 4.0]).blocks == 3  # fewer trials than blocks: a block per trial
    assert run_level([1.0, 2.0, 4.0]).log_median == pytest.approx(np.log(2.0))
    assert run_level([1.0]) is None and run_level([1.0, 0.0, 2.0]) is None  # no spread / no ratio
    # the block spread is robust: one trial 4x slow among ten does not move it, but does the se
    steady = [100.0 * (1 + 0.01 * ((i * 7) % 5 - 2)) for i in range(10)]
    spiked = run_level(steady[:4] + [400.0] + steady[5:])
    assert spiked.spread == pytest.approx(run_level(steady).spread, rel=0.5) and spiked.spread < 0.05
    assert spiked.se > 3 * run_level(steady).se


def test_difference_is_judged_against_run_noise_and_drift():
    steady = RunLevel(np.log(100.0), 0.0, 10, 0.0)
    same, slower = RunLevel(np.log(100.0), 0.0, 10, 0.0), RunLevel(np.log(80.0), 0.0, 10, 0.0)
    # no noise anywhere: any difference is certain, none is none
    assert difference_p([steady], same, 0.0).p == 1.0 and difference_p([steady], slower, 0.0).p == 0.0
    d = difference_p([steady], slower, 0.10)  # ln 0.8 against sqrt(2) * 10%: z = -1.578
    assert d.sd == pytest.approx(0.1 * np.sqrt(2)) and d.df == np.inf
    assert d.p == pytest.approx(2 * stats.norm.sf(abs(np.log(0.8)) / (0.1 * np.sqrt(2))))
    low, high = d.detectable(0.05)  # a change this test alone calls significant: beyond ±1.96 sd (log)
    assert high == pytest.approx(np.expm1(1.96 * 0.1 * np.sqrt(2)) * 100, rel=1e-3) and low == pytest.approx(
        np.expm1(-1.96 * 0.1 * np.sqrt(2)) * 100, rel=1e-3
    )
    # drift within the runs adds to the yardstick; its few degrees of freedom widen the t
    drifting = RunLevel(np.log(80.0), 0.05, 3, 0.05)
    d2 = difference_p([RunLevel(np.log(100.0), 0.05, 3, 0.05)], drifting, 0.0)
    assert d2.sd == pytest.approx(0.05 * np.sqrt(2)) and d2.df == pytest.approx(4.0)
    assert d2.p == pytest.approx(2 * stats.t.sf(abs(np.log(0.8)) / (0.05 * np.sqrt(2)), 4))
    # a window of B baseline runs: sigma^2 (1 + 1/B)
    d3 = difference_p([steady] * 4, slower, 0.10)
    assert d3.sd == pytest.approx(0.1 * np.sqrt(1.25))


def test_run_noise_is_the_floor_unless_earlier_runs_spread_more():
    assert run_noise(0.10, []).basis == "assumed" and run_noise(0.10, [70.0]).seen is None
    tight = run_noise(0.10, [70.0, 71.0])  # two earlier runs 1.4% apart: cannot lower the floor
    assert (
        tight.basis == "assumed" and tight.sigma == 0.10 and tight.seen == pytest.approx(np.log(71 / 70) / np.sqrt(2))
    )
    wide = run_noise(0.10, [60.0, 80.0])  # 29% apart: this case wanders more than assumed
    assert wide.basis == "catalog" and wide.sigma == pytest.approx(np.log(80 / 60) / np.sqrt(2)) and wide.n_seen == 2
    assert run_noise(0.0, [60.0, 80.0]).basis == "catalog"
    # a baseline whose own blocks wander by 20% and 30%: runs can start anywhere in that range
    wandering = [RunLevel(0.0, 0.01, 10, 0.2), RunLevel(0.0, 0.01, 10, 0.3)]
    by_blocks = run_noise(0.10, [70.0, 71.0], wandering)
    assert by_blocks.basis == "blocks" and by_blocks.sigma == pytest.approx(np.sqrt((0.04 + 0.09) / 2))
    assert run_noise(0.10, [60.0, 80.0], wandering[:1]).basis == "catalog"  # 20.3% > 20%: the largest wins


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx([0.03, 0.06, 0.06, 0.02, None])


def _case(run_id, case_id, samples, status="ok", device="dev", reason=None):
    return CaseData(run_id, case_id, device, "m", f"m {case_id}", status, reason, samples)


def _normal(rng, mean, cv, n):
    return [rng.gauss(mean, mean * cv) for _ in range(n)]


@pytest.fixture
def verdicts():
    rng = random.Random(3)
    base = {
        "slower": _case("a", "slower", {"decode_tok_s": _normal(rng, 100, 0.01, 10)}),
        "faster": _case("a", "faster", {"decode_tok_s": _normal(rng, 100, 0.01, 10)}),
        "small": _case("a", "small", {"decode_tok_s": _normal(rng, 100, 0.01, 10)}),
        "noisy": _case("a", "noisy", {"decode_tok_s": _normal(rng, 100, 0.15, 3)}),
        "ttft": _case("a", "ttft", {"ttft_s": _normal(rng, 0.2, 0.01, 10), "peak_rss_mb": [100.0]}),
        "same": _case("a", "same", {"latency_p50_ms": _normal(rng, 2.0, 0.05, 400)}),
        "gone": _case("a", "gone", {"decode_tok_s": _normal(rng, 100, 0.01, 10)}),
        "broke": _case("a", "broke", {"decode_tok_s": _normal(rng, 100, 0.01, 10)}),
    }
    new = {
        "slower": _case("b", "slower", {"decode_tok_s": _normal(rng, 88, 0.01, 10)}),  # -12%: worse
        "faster": _case("b", "faster", {"decode_tok_s": _normal(rng, 110, 0.01, 10)}),  # +10%: better
        "small": _case("b", "small", {"decode_tok_s": _normal(rng, 102, 0.01, 10)}),  # +2%: under threshold
        "noisy": _case("b", "noisy", {"decode_tok_s": _normal(rng, 80, 0.15, 3)}),  # -20% on 3 vs 3 noisy trials
        "ttft": _case("b", "ttft", {"ttft_s": _normal(rng, 0.25, 0.01, 10), "peak_rss_mb": [150.0]}),  # lower is better
        "same": _case("b", "same", {"latency_p50_ms": _normal(rng, 2.0, 0.05, 400)}),
        "broke": _case("b", "broke", {}, status="failed", reason="the agent exited with 1: boom"),
        "fresh": _case("b", "fresh", {"decode_tok_s": _normal(rng, 50, 0.01, 10)}),
    }
    # no run-to-run noise assumed, these samples have none beyond their trials (the floor is tested below)
    result = compare(
        {k: [v] for k, v in base.items()}, new, threshold_pct=5.0, alpha=0.05, new_run="b", run_noise_pct=0
    )
    return result, {(v.case_id, v.metric): v for v in result.verdicts}


def test_verdicts_on_known_differences(verdicts):
    result, by = verdicts
    assert by["slower", "decode_tok_s"].verdict == "worse"
    assert by["slower", "decode_tok_s"].change_pct == pytest.approx(-12, abs=2)
    assert by["faster", "decode_tok_s"].verdict == "better"
    assert by["small", "decode_tok_s"].verdict == "not significant"
    assert "within ±5%" in by["small", "decode_tok_s"].reason
    noisy = by["noisy", "decode_tok_s"]  # a big change, but 3 trials a side with 15% spread cannot tell
    assert noisy.verdict == "not significant" and "drift within each run (3 time blocks)" in noisy.reason
    assert "alone, a change must pass" in noisy.reason
    # nothing assumed: the run-to-run noise is what the baseline's blocks show
    assert "the spread of the baseline's own time blocks" in by["slower", "decode_tok_s"].reason
    assert {v.basis for v in result.verdicts if v.p_value is not None} == {"blocks"}
    assert by["ttft", "ttft_s"].verdict == "worse"  # +25% time to first token
    assert by["ttft", "peak_rss_mb"].verdict == "untested" and by["ttft", "peak_rss_mb"].change_pct == pytest.approx(50)
    assert by["same", "latency_p50_ms"].verdict == "not significant"
    assert by["gone", "decode_tok_s"].verdict == "missing"
    assert by["broke", "decode_tok_s"].verdict == "failed" and "boom" in by["broke", "decode_tok_s"].reason
    assert by["fresh", "decode_tok_s"].verdict == "new"
    assert result.regressed and result.failed
    assert result.counts()["worse"] == 2 and result.counts()["better"] == 1


def test_identical_runs_give_no_verdict():
    rng = random.Random(5)
    cases = {f"c{i}": _case("a", f"c{i}", {"decode_tok_s": _normal(rng, 50, 0.2, 12)}) for i in range(30)}
    result = compare({k: [v] for k, v in cases.items()}, cases)
    assert {v.verdict for v in result.verdicts} == {"not significant"}
    assert not result.regressed


def test_without_history_a_change_must_pass_the_assumed_run_noise():
    rng = random.Random(8)
    base = {c: [_case("a", c, {"decode_tok_s": _normal(rng, 100, 0.01, 10)})] for c in ("small", "big")}
    new = {
        "small": _case("b", "small", {"decode_tok_s": _normal(rng, 88, 0.01, 10)}),  # -12%: run noise can do that
        "big": _case("b", "big", {"decode_tok_s": _normal(rng, 60, 0.01, 10)}),  # -40%: it cannot
    }
    by = {v.case_id: v for v in compare(base, new, history={"small": {"decode_tok_s": [100.0]}}).verdicts}
    assert by["small"].verdict == "not significant" and by["small"].basis == "assumed"
    assert "an assumed run-to-run noise of 10% (no history)" in by["small"].reason
    assert "keep 3+ runs of history, or set --run-noise-pct" in by["small"].reason
    assert by["big"].verdict == "worse" and by["big"].run_noise_pct == pytest.approx(10)
    # told that this machine's runs differ by 2% at most, the 12% is a regression
    by = {v.case_id: v for v in compare(base, new, run_noise_pct=2).verdicts}
    assert by["small"].verdict == "worse" and "assumed run-to-run noise of 2%" in by["small"].reason
    # two earlier runs 30% apart: this case wanders more than assumed, and the 40% is within it
    wide = {"big": {"decode_tok_s": [75.0, 100.0]}}
    (v,) = [v for v in compare(base, new, history=wide).verdicts if v.case_id == "big"]
    assert v.basis == "catalog" and v.verdict == "not significant"
    assert v.run_noise_pct == pytest.approx(np.log(100 / 75) / np.sqrt(2) * 100)
    assert "seen in 2 earlier runs of this case" in v.reason


def test_the_baseline_blocks_raise_the_yardstick_the_new_run_cannot():
    rng = np.random.default_rng(6)
    calm = list(100 * np.exp(rng.normal(0, 0.01, 2000)))
    wandering = list(100 * np.exp(np.repeat(rng.normal(0, 0.25, 10), 200) + rng.normal(0, 0.01, 2000)))
    slower = [v * 0.7 for v in calm]  # -30%
    (v,) = compare(
        {"c": [_case("a", "c", {"latency_p50_ms": wandering})]}, {"c": _case("b", "c", {"latency_p50_ms": slower})}
    ).verdicts
    assert v.basis == "blocks" and v.run_noise_pct > 15 and v.verdict == "not significant"
    assert "the spread of the baseline's own time blocks" in v.reason
    # the same change from a calm baseline to an erratic new run: judged against the floor
    erratic = [v * 0.7 for v in wandering]
    (v,) = compare(
        {"c": [_case("a", "c", {"latency_p50_ms": calm})]}, {"c": _case("b", "c", {"latency_p50_ms": erratic})}
    ).verdicts
    assert v.basis == "assumed" and v.run_noise_pct == pytest.approx(10)


def test_a_window_of_runs_is_the_baseline():
    rng = random.Random(9)
    window = [_case(f"r{i}", "c", {"decode_tok_s": _normal(rng, 100 + i, 0.01, 10)}) for i in range(4)]
    new = {"c": _case("new", "c", {"decode_tok_s": _normal(rng, 90, 0.01, 10)})}
    result = compare({"c": window}, new)
    (v,) = result.verdicts
    assert v.base_median == pytest.approx(101.5, abs=0.5)  # median of the four runs' medians
    assert v.n_base == 40 and v.verdict == "worse"
    assert v.basis == "history" and "4 earlier runs" in v.reason  # the window's runs are the history
    assert result.base_runs == ["r0", "r1", "r2", "r3"]


def test_junit_is_valid_and_counts_regressions(verdicts, tmp_path):
    result, _ = verdicts
    path = tmp_path / "junit.xml"
    path.write_text(to_junit(result))
    xml = JUnitXml.fromfile(str(path))
    cases = [case for suite in xml for case in suite]
    assert len(cases) == len(result.verdicts)  # one testcase per case and metric
    kinds = [type(r).__name__ for case in cases for r in case.result]
    assert kinds.count("Failure") == 2 and kinds.count("Error") == 1
    assert kinds.count("Skipped") == sum(v.verdict in ("missing", "untested") for v in result.verdicts)
    failure = next(r for case in cases for r in case.result if isinstance(r, Failure))
    assert "decode_tok_s" in failure.message or "ttft_s" in failure.message
    assert any(isinstance(r, Error) for case in cases for r in case.result)
    assert any(isinstance(r, Skipped) for case in cases for r in case.result)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "2" and root.get("tests") == str(len(cases))


def test_markdown_and_text_lead_with_what_changed(verdicts):
    result, _ = verdicts
    md = to_markdown(result)
    assert md.startswith("### melt compare: REGRESSION")
    table = md.split("<details>")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "verdict" not in line]
    assert {r.split(" | ")[0] for r in rows} == {"| 🔴 worse", "| 🟢 better", "| ❌ failed", "| ❔ missing", "| 🆕 new"}
    assert all(row.count(" | ") == 8 for row in rows)  # nine columns, pipes in reasons escaped
    text = to_text(result)
    assert text.splitlines()[0].startswith("REGRESSION") and "worse" in text and "⚪" not in text


def test_student_t_and_the_run_level_test():
    from melt.analysis.significance import run_level_p, t_two_sided_p

    assert t_two_sided_p(12.706, 1) == pytest.approx(0.05, abs=1e-4)  # textbook table values
    assert t_two_sided_p(2.086, 20) == pytest.approx(0.05, abs=1e-4)
    assert t_two_sided_p(-2.0, 10) == pytest.approx(0.0734, abs=1e-4)
    assert t_two_sided_p(1.96, np.inf) == pytest.approx(0.05, abs=1e-4)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert run_level_p([70.0, 72.0], 40.0) is None  # fewer than 3 earlier runs: no run-to-run spread
    assert run_level_p([70.0, 70.0, 70.0], 40.0) is None  # no spread at all
    history = [73.5, 74.2, 72.8, 75.8, 72.4]  # decode tok/s medians of five identical runs here
    assert run_level_p(history, 73.0) > 0.5
    assert run_level_p(history, 44.0) < 1e-4


def _runs_with_offsets(rng, n_runs, mean, run_cv, trial_cv, n_trials):
    """Runs whose medians differ by run_cv (the machine's run-to-run noise), trials by trial_cv."""
    runs = []
    for i in range(n_runs):
        level = mean * (1 + rng.gauss(0, run_cv))
        runs.append(_case(f"r{i}", "c", {"decode_tok_s": _normal(rng, level, trial_cv, n_trials)}))
    return runs


def test_history_makes_the_run_the_unit():
    import statistics

    rng = random.Random(11)
    false_alarms = 0
    for _ in range(20):  # 20 A/A comparisons on a machine whose runs differ by ~6%, trials by 1%
        runs = _runs_with_offsets(rng, 8, 70.0, 0.06, 0.01, 10)
        history = {"c": {"decode_tok_s": [statistics.median(r.samples["decode_tok_s"]) for r in runs[:-1]]}}
        base, new = {"c": [runs[-2]]}, {"c": runs[-1]}
        judged = compare(base, new, history=history, run_noise_pct=0)  # the history, not the floor, decides
        assert judged.verdicts[0].basis == "history"
        false_alarms += judged.counts()["worse"] + judged.counts()["better"]
    assert false_alarms == 0
    starved = {"c": _case("s", "c", {"decode_tok_s": _normal(rng, 42.0, 0.01, 10)})}  # -40%
    (v,) = compare(base, starved, history=history).verdicts
    assert v.verdict == "worse" and v.basis == "history" and "7 earlier runs" in v.reason


def test_run_level_figures_are_judged_against_history():
    rng = random.Random(2)
    history = {"c": {"peak_rss_mb": [rng.gauss(300, 1) for _ in range(6)]}}
    base = {"c": [_case("a", "c", {"peak_rss_mb": [300.0]})]}
    grew = {"c": _case("b", "c", {"peak_rss_mb": [390.0]})}
    (v,) = compare(base, grew, history=history).verdicts
    assert v.verdict == "worse" and v.change_pct == pytest.approx(30)
    (v,) = compare(base, grew).verdicts
    assert v.verdict == "untested" and "3+ earlier runs" in v.reason


BUSY = "other processes used 38% of a core during the trials (limit 5%)"


@pytest.mark.parametrize("side", ["new", "base", "neither"])
def test_a_change_measured_on_a_shared_machine_is_inconclusive(side):
    """melt issue 11: a run melt itself saw shared with other work is not judged worse or better; a quiet pair
    with the same figures is. Quality and drift verdicts are not touched (tested with the quality tests)."""
    rng = random.Random(11)
    base = _case("a", "c", {"decode_tok_s": _normal(rng, 100, 0.01, 10)})
    new = _case("b", "c", {"decode_tok_s": _normal(rng, 60, 0.01, 10)})  # -40%: beyond the assumed run noise
    if side != "neither":
        (new if side == "new" else base).shared.append(BUSY)
    result = compare({"c": [base]}, {"c": new}, new_run="b")
    (v,) = [v for v in result.verdicts if v.metric == "decode_tok_s"]
    if side == "neither":
        assert v.verdict == "worse" and result.regressed
        return
    assert v.verdict == "inconclusive" and not result.regressed and result.counts()["inconclusive"] == 1
    assert v.reason.startswith("would be worse (-") and BUSY in v.reason
    assert ("the new run:" if side == "new" else "baseline a:") in v.reason
    assert "🟡 inconclusive" in to_markdown(result)
    assert 'skipped message="inconclusive: would be worse' in to_junit(result)


def test_a_shared_side_is_read_from_its_own_figures_and_limits():
    from melt.analysis.compare import _shared

    case = {"telemetry": {"max_foreign_cpu_pct": 50}}
    assert _shared({}, {"foreign_cpu_pct": 38.0, "steal_pct": 0.0}) == [BUSY]
    assert _shared(case, {"foreign_cpu_pct": 38.0, "steal_pct": 0.0}) == []  # within the case's own limit
    assert "steal" in _shared({}, {"foreign_cpu_pct": 0.0, "steal_pct": 3.5})[0]
    assert _shared({}, {"foreign_cpu_pct": None, "steal_pct": None}) == []
