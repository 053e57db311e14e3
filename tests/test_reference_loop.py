"""The machine's own speed around a case's trials (melt.agent.reference_loop): timed by the real agent, kept in
agent.json and metrics.json, in summary.csv; drift within a case judged against telemetry.max_machine_drift_pct
where a recipe sets it."""

from __future__ import annotations

import csv
import json
import platform
import statistics

import pytest
from conftest import run_melt, write_recipe

from melt.agent import reference_loop
from melt.analysis.machine_speed import drift_reason
from melt.analysis.metrics import case_metrics


def test_the_loop_times_each_repetition():
    rates = reference_loop.measure(repetitions=4, iterations=20_000)
    assert len(rates) == 4 and all(r > 0.1 for r in rates)  # M it/s: even a slow board's core does more
    assert platform.python_version() in reference_loop.method()


@pytest.mark.parametrize(
    ("before", "after", "drift"),
    [([10.0, 10.0, 12.0], [8.0, 9.0, 7.0], -20.0), ([5.0], [5.5], 10.0), ([4.0, 4.0], [4.0, 4.0], 0.0)],
)
def test_the_summary_is_medians_and_their_drift(before, after, drift):
    s = reference_loop.summary(before, after)
    assert s["before_mops_s"] == statistics.median(before) and s["after_mops_s"] == statistics.median(after)
    assert s["mops_s"] == statistics.median(before + after)
    assert s["drift_pct"] == pytest.approx(drift)
    assert reference_loop.summary([], [])["mops_s"] is None and reference_loop.summary([3.0], [])["drift_pct"] is None


@pytest.mark.parametrize("drift", [-40.0, -15.1, -15.0, 0.0, 14.9, 15.0, 15.1, 60.0])
@pytest.mark.parametrize("limit", [15.0, 50.0])
def test_drift_beyond_the_limit_either_way_is_a_reason(drift, limit):
    loop = {"before_mops_s": 10.0, "after_mops_s": 10.0 * (1 + drift / 100), "drift_pct": drift}
    reason = drift_reason(loop, limit)
    if abs(drift) <= limit:
        assert reason is None
    else:
        assert reason.startswith(f"the machine's own speed changed by {drift:+.0f}%") and f"limit {limit:g}%" in reason
    assert drift_reason(None, limit) is None and drift_reason({"drift_pct": None}, limit) is None
    assert drift_reason(loop, None) is None  # no limit set: off


RECIPE = """
name: loop
models:
  - id: vad
    runtime: onnxruntime
    source: {path: static.onnx}
    params: {intra_op_threads: 1}
protocol: {warmup: 1, repetitions: 5, min_duration_s: 0.05}
telemetry: {interval_ms: 50, idle_s: 0.1, max_cv_pct: 1000@EXTRA@}
"""


def run_case(tmp_path, models, extra: str = "") -> tuple:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(tmp_path, RECIPE.replace("@EXTRA@", extra))
    proc = run_melt("run", recipe, "--results", tmp_path / "r", "--run-id", "x")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "x" / "cases").iterdir()
    agent = json.loads((case_dir / "agent.json").read_text())
    metrics = json.loads((case_dir / "metrics.json").read_text())
    with (tmp_path / "r" / "x" / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    return case_dir, agent, metrics, row


def test_the_agent_times_the_loop_right_before_and_after_the_trials(tmp_path, models):
    case_dir, agent, metrics, row = run_case(tmp_path / "on", models)
    loop, phases = agent["reference_loop"], agent["phases"]
    assert len(loop["before"]) == len(loop["after"]) == reference_loop.REPETITIONS
    assert phases["load"][1] <= phases["reference_before"][0] <= phases["reference_before"][1] <= phases["trials"][0]
    assert phases["trials"][1] <= phases["reference_after"][0] <= phases["reference_after"][1]
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines()]
    assert all(phases["trials"][0] <= t["t_start_ns"] and t["t_end_ns"] <= phases["trials"][1] for t in trials)
    assert metrics["summary"]["ref_loop_mops_s"] == pytest.approx(statistics.median(loop["before"] + loop["after"]))
    assert metrics["reference_loop"]["method"] == reference_loop.method()
    assert float(row["ref_loop_mops_s"]) == pytest.approx(metrics["summary"]["ref_loop_mops_s"], rel=1e-4)

    # the same files, the loop 40% slower after the trials: with a drift limit, semivalid, saying so; without, or
    # with a looser one, not
    case = json.loads((case_dir / "case.json").read_text())
    drifted = {**agent, "reference_loop": reference_loop.summary([20.0] * 10, [12.0] * 10)}

    def reasons(**telemetry) -> list[str]:
        judged = case_metrics({**case, "telemetry": {**case["telemetry"], "max_cv_pct": 1000, **telemetry}}, trials,
                              drifted)  # fmt: skip
        assert (judged["validity"]["verdict"] == "semivalid") == bool(judged["validity"]["reasons"])
        return judged["validity"]["reasons"]

    assert any(r.startswith("the machine's own speed changed by -40%") for r in reasons(max_machine_drift_pct=15))
    assert not any("own speed" in r for r in reasons(max_machine_drift_pct=50) + reasons())


def test_a_recipe_can_turn_the_loop_off(tmp_path, models):
    _, agent, metrics, row = run_case(tmp_path / "off", models, ", reference_loop: false")
    assert "reference_loop" not in agent and "reference_before" not in agent["phases"]
    assert metrics["summary"]["ref_loop_mops_s"] is None and row["ref_loop_mops_s"] == ""
    assert metrics["missing"]["ref_loop_mops_s"] == "telemetry.reference_loop is off"
