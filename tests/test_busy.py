"""A busy machine is detected: CPU time other processes used while the trials ran, and steal time,
from the trace's counters; a case that shared the machine is semivalid and says how much."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_melt, write_recipe

from melt.analysis.busy import busy_figures, busy_reasons
from melt.analysis.trace import Trace
from melt.telemetry.procfs import process_cpu_ticks, stat_counters

# --- the counters, from their definitions in proc(5) -----------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("cpu  100 20 30 400 50 6 7 8 9 10", (100 + 20 + 30 + 6 + 7, 8, 100 + 20 + 30 + 400 + 50 + 6 + 7 + 8)),
        ("cpu  100 20 30 400 50 6 7 8", (163, 8, 621)),  # 2.6.11-2.6.23: steal, no guest
        ("cpu  100 20 30 400 50 6 7", (163, 0, 613)),  # before 2.6.11: no steal
        ("cpu  100 20 30 400", (150, 0, 550)),  # 2.4: four fields
    ],
)
def test_stat_counters_every_kernel_generation(line, expected):
    text = f"{line}\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 12345\n"
    assert stat_counters(text) == expected


def test_stat_counters_need_the_aggregate_line():
    assert stat_counters("cpu0 1 2 3 4\n") is None and stat_counters("") is None
    assert stat_counters("cpu  a b c d\n") is None


@pytest.mark.parametrize("comm", ["python3", "my prog", "a) (b", "x)"])
def test_process_cpu_ticks_after_the_last_parenthesis(comm):
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    line = f"4242 ({comm}) R 1 4242 4242 0 -1 4194304 100 0 0 0 700 300 20 10 20 0 3 0 123 456 789"
    assert process_cpu_ticks(line) == 700 + 300 + 20 + 10
    assert process_cpu_ticks("4242 (cut) R 1 2") is None


# --- the figures, on constructed traces -----------------------------------------------------------


def trace(rows: list[tuple]) -> Trace:
    """rows: (t, busy, steal, total, proc, sampler) seconds; None for an empty cell."""
    names = ["cpu.busy_s", "cpu.steal_s", "cpu.total_s", "proc.cpu_s", "sampler.cpu_s"]
    return Trace(t_s=[r[0] for r in rows], columns={n: [r[i + 1] for r in rows] for i, n in enumerate(names)})


def test_foreign_cpu_is_busy_less_the_measured_process_and_the_sampler():
    # 2 cores, 1 s per row: the agent runs a full core, the sampler 2%, someone else 40% of a core
    rows = [(float(t), 1.42 * t, 0.01 * t, 2.0 * t, 1.0 * t, 0.02 * t) for t in range(11)]
    f = busy_figures(trace(rows), [(2.5, 7.5)])
    assert f["windows"] == [[2.0, 8.0]] and f["wall_s"] == 6.0  # brackets the window, never shorter
    assert f["foreign_cpu_pct"] == pytest.approx(40.0)
    assert f["steal_pct"] == pytest.approx(0.5)
    assert busy_reasons(f, 5, 2) == ["other processes used 40% of a core during the trials (limit 5%)"]
    assert busy_reasons(f, 50, 0.4) == ["the hypervisor took 0.5% of CPU time (steal) during the trials (limit 0.4%)"]


def test_overlapping_windows_count_each_second_once():
    rows = [(float(t), 1.1 * t, 0.0, 2.0 * t, 1.0 * t, 0.0) for t in range(11)]
    f = busy_figures(trace(rows), [(1.2, 2.2), (2.1, 3.9), (6.0, 6.5)])
    assert f["windows"] == [[1.0, 4.0], [6.0, 7.0]] and f["wall_s"] == 4.0
    assert f["foreign_cpu_pct"] == pytest.approx(10.0)


def test_tick_rounding_below_zero_is_zero_and_missing_counters_say_why():
    rows = [(0.0, 0.0, 0.0, 0.0, 0.0, 0.0), (1.0, 0.99, 0.0, 2.0, 1.0, 0.0)]
    assert busy_figures(trace(rows), [(0.0, 1.0)])["foreign_cpu_pct"] == 0.0
    no_proc = [(t, b, s, tot, None, o) for t, b, s, tot, _, o in rows]
    f = busy_figures(trace(no_proc), [(0.0, 1.0)])
    assert f["foreign_cpu_pct"] is None and "measured process" in f["why"]["foreign_cpu_pct"]
    assert f["steal_pct"] == 0.0
    short = busy_figures(trace(rows), [(0.2, 1.4)])  # no sample after the window's end
    assert short["foreign_cpu_pct"] is None and "no samples" in short["why"]["foreign_cpu_pct"]
    assert busy_figures(Trace(t_s=[0.0], columns={}), [(0, 1)])["why"]["steal_pct"].startswith("no /proc/stat")


# --- a real competing process --------------------------------------------------------------------


@pytest.fixture(scope="module")
def conv_onnx(tmp_path_factory) -> Path:
    """A static conv model of some 10 ms per inference on one thread."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from tiny_models import write_graph

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((64, 64, 3, 3)) * 0.1).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 128, 128])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 128, 128])
    return write_graph(tmp_path_factory.mktemp("busy") / "conv.onnx", nodes, [x], [y], initializers=[w])


def run_case(folder: Path, model: Path, max_cv_pct: float = 10) -> dict:
    folder.mkdir()
    (folder / "conv.onnx").symlink_to(model)
    recipe = write_recipe(
        folder,
        """
        name: busy
        models:
          - id: conv
            runtime: onnxruntime
            source: {path: conv.onnx}
            params: {intra_op_threads: 1, inter_op_threads: 1}
        protocol: {warmup: 3, repetitions: 20, min_duration_s: 3.0}
        telemetry: {interval_ms: 100, idle_s: 0.3, max_cv_pct: @CV@}
        """.replace("@CV@", str(max_cv_pct)),
    )
    proc = run_melt("run", recipe, "--results", folder / "r", "--run-id", "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (folder / "r" / "b" / "cases").iterdir()
    metrics = json.loads((case_dir / "metrics.json").read_text())
    with (folder / "r" / "b" / "summary.csv").open() as f:
        header, row = f.read().splitlines()[:2]
    metrics["csv"] = dict(zip(header.split(","), row.split(",")))
    return metrics


def test_a_case_beside_a_cpu_burner_is_semivalid_and_says_how_much(tmp_path, conv_onnx):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        shared = run_case(tmp_path / "shared", conv_onnx)
    finally:
        burner.kill()
        burner.wait()
    s = shared["summary"]
    assert s["foreign_cpu_pct"] > 50, shared["telemetry"]["busy"]  # the burner kept about a core busy
    assert s["validity"] == "semivalid"
    assert any(r.startswith("other processes used") and "% of a core" in r for r in shared["validity"]["reasons"])
    assert float(shared["csv"]["foreign_cpu_pct"]) == pytest.approx(s["foreign_cpu_pct"], rel=1e-3)
    assert shared["csv"]["steal_pct"] != "" or shared["missing"]["steal_pct"]


def test_the_same_case_alone_is_valid(tmp_path, conv_onnx):
    """Alone, the machine's CPU is the case's: no busy reason, valid. The spread limit is lifted here
    (telemetry.max_cv_pct): this test judges the busy rule, and on a shared VM a neighbour outside it,
    which /proc cannot see, can make single inferences several times slower (the spread rule is tested in
    test_metrics.py)."""
    alone = run_case(tmp_path / "alone", conv_onnx, max_cv_pct=1000)
    s = alone["summary"]
    assert s["foreign_cpu_pct"] < 5, alone["telemetry"]["busy"]
    assert s["validity"] == "valid", alone["validity"]


def test_the_spread_limit_is_the_recipe_s(tmp_path, conv_onnx):
    """telemetry.max_cv_pct sets the spread limit: a limit below any real spread makes the case semivalid,
    saying the limit and the cv."""
    tight = run_case(tmp_path / "tight", conv_onnx, max_cv_pct=0.001)
    (reason,) = [r for r in tight["validity"]["reasons"] if r.startswith("spread over")]
    assert reason.startswith("spread over 0.001%: cv ") and tight["summary"]["validity"] == "semivalid"
