"""Regression verdicts: the rank test, Holm's correction, verdicts on synthetic samples with known
differences, and the JUnit XML and markdown a CI system reads."""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from melt.analysis.compare import CaseData, compare
from melt.analysis.significance import EXACT_MAX_N, _u_counts, holm, mann_whitney_p, min_p
from melt.report.verdicts import to_junit, to_markdown, to_text


def test_exact_rank_test_matches_first_principles():
    # complete separation of 5 vs 5: one arrangement of C(10, 5) = 252 each way
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert min_p(5, 5) == pytest.approx(2 / 252) and min_p(10, 10) < 1.1e-5
    assert sum(_u_counts(7, 9)) == math.comb(16, 7)
    # symmetric and invariant to a monotone transform (ranks only)
    x, y = [1.0, 4.0, 2.5, 7.0], [3.0, 5.0, 6.0, 8.0, 9.0]
    assert mann_whitney_p(x, y) == pytest.approx(mann_whitney_p(y, x))
    assert mann_whitney_p(x, y) == pytest.approx(mann_whitney_p([v**3 for v in x], [v**3 for v in y]))
    assert mann_whitney_p([1.0], [2.0, 3.0]) is None  # nothing to test with one trial
    assert mann_whitney_p([5.0] * 6, [5.0] * 6) == 1.0


def test_normal_approximation_agrees_with_the_exact_distribution(monkeypatch):
    rng = random.Random(7)
    x = [rng.gauss(0, 1) for _ in range(25)]
    y = [rng.gauss(0.7, 1) for _ in range(25)]
    exact = mann_whitney_p(x, y)
    monkeypatch.setattr("melt.analysis.significance.EXACT_MAX_N", 10)
    approx = mann_whitney_p(x, y)
    assert EXACT_MAX_N >= 25
    assert approx == pytest.approx(exact, rel=0.1)
    assert mann_whitney_p(x, [v + 0.01 for v in x]) > 0.5


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
        "noisy": _case("a", "noisy", {"decode_tok_s": _normal(rng, 100, 0.01, 3)}),
        "ttft": _case("a", "ttft", {"ttft_s": _normal(rng, 0.2, 0.01, 10), "peak_rss_mb": [100.0]}),
        "same": _case("a", "same", {"latency_p50_ms": _normal(rng, 2.0, 0.05, 400)}),
        "gone": _case("a", "gone", {"decode_tok_s": _normal(rng, 100, 0.01, 10)}),
        "broke": _case("a", "broke", {"decode_tok_s": _normal(rng, 100, 0.01, 10)}),
    }
    new = {
        "slower": _case("b", "slower", {"decode_tok_s": _normal(rng, 88, 0.01, 10)}),  # -12%: worse
        "faster": _case("b", "faster", {"decode_tok_s": _normal(rng, 110, 0.01, 10)}),  # +10%: better
        "small": _case("b", "small", {"decode_tok_s": _normal(rng, 102, 0.01, 10)}),  # +2%: under threshold
        "noisy": _case("b", "noisy", {"decode_tok_s": _normal(rng, 80, 0.01, 3)}),  # -20% on 3 vs 3 trials
        "ttft": _case("b", "ttft", {"ttft_s": _normal(rng, 0.25, 0.01, 10), "peak_rss_mb": [150.0]}),  # lower is better
        "same": _case("b", "same", {"latency_p50_ms": _normal(rng, 2.0, 0.05, 400)}),
        "broke": _case("b", "broke", {}, status="failed", reason="the agent exited with 1: boom"),
        "fresh": _case("b", "fresh", {"decode_tok_s": _normal(rng, 50, 0.01, 10)}),
    }
    result = compare({k: [v] for k, v in base.items()}, new, threshold_pct=5.0, alpha=0.05, new_run="b")
    return result, {(v.case_id, v.metric): v for v in result.verdicts}


def test_verdicts_on_known_differences(verdicts):
    result, by = verdicts
    assert by["slower", "decode_tok_s"].verdict == "worse"
    assert by["slower", "decode_tok_s"].change_pct == pytest.approx(-12, abs=2)
    assert by["faster", "decode_tok_s"].verdict == "better"
    assert by["small", "decode_tok_s"].verdict == "not significant"
    assert "within ±5%" in by["small", "decode_tok_s"].reason
    noisy = by["noisy", "decode_tok_s"]  # a big change, but 3 vs 3 trials can never be significant
    assert noisy.verdict == "not significant" and "more repetitions" in noisy.reason
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


def test_a_window_of_runs_is_the_baseline():
    rng = random.Random(9)
    window = [_case(f"r{i}", "c", {"decode_tok_s": _normal(rng, 100 + i, 0.01, 10)}) for i in range(4)]
    new = {"c": _case("new", "c", {"decode_tok_s": _normal(rng, 90, 0.01, 10)})}
    result = compare({"c": window}, new)
    (v,) = result.verdicts
    assert v.base_median == pytest.approx(101.5, abs=0.5)  # median of the four runs' medians
    assert v.n_base == 40 and v.verdict == "worse"
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
    assert t_two_sided_p(2.0, 10) == pytest.approx(0.0734, abs=1e-4)
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


def test_run_to_run_noise_fools_the_trial_test_but_not_the_run_test():
    import statistics

    rng = random.Random(11)
    false_by_trials = false_by_runs = 0
    for _ in range(20):  # 20 A/A comparisons on a machine whose runs differ by ~6%, trials by 1%
        runs = _runs_with_offsets(rng, 8, 70.0, 0.06, 0.01, 10)
        history = {"c": {"decode_tok_s": [statistics.median(r.samples["decode_tok_s"]) for r in runs[:-1]]}}
        base, new = {"c": [runs[-2]]}, {"c": runs[-1]}
        false_by_trials += compare(base, new).regressed or compare(base, new).counts()["better"] > 0
        judged = compare(base, new, history=history)
        assert judged.verdicts[0].basis == "runs"
        false_by_runs += judged.counts()["worse"] + judged.counts()["better"]
    assert false_by_trials >= 5  # the trial test calls run noise significant
    assert false_by_runs == 0
    starved = {"c": _case("s", "c", {"decode_tok_s": _normal(rng, 42.0, 0.01, 10)})}  # -40%
    (v,) = compare(base, starved, history=history).verdicts
    assert v.verdict == "worse" and v.basis == "runs" and "earlier runs" in v.reason


def test_run_level_figures_are_judged_against_history():
    rng = random.Random(2)
    history = {"c": {"peak_rss_mb": [rng.gauss(300, 1) for _ in range(6)]}}
    base = {"c": [_case("a", "c", {"peak_rss_mb": [300.0]})]}
    grew = {"c": _case("b", "c", {"peak_rss_mb": [390.0]})}
    (v,) = compare(base, grew, history=history).verdicts
    assert v.verdict == "worse" and v.change_pct == pytest.approx(30)
    (v,) = compare(base, grew).verdicts
    assert v.verdict == "untested" and "3+ earlier runs" in v.reason
