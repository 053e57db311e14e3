"""The results catalog (DuckDB over the files) and `melt compare` on real run folders: a real run
of a tiny model made steady, an identical copy, a copy whose decode was slowed threefold on
purpose, and one whose decode is 25% slower (as identical runs can be here); and a second real run of the
same recipe beside the first, as both came.

Steady: every counted trial is given the timings of the run's median trial, give or take 2%, and the
copy's limits on other processes' CPU share are raised (melt compare does not judge a run it saw shared). A
tiny model's trial lasts a few milliseconds, so on a shared machine a preempted stretch of trials
is several times slower, and a comparison then (rightly) judges the baseline's own drift too
large to tell; these tests are about what melt does with a known change, not about the machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from conftest import run_melt, write_recipe
from junitparser import JUnitXml

from melt.results.catalog import CATALOG_NAME, Catalog
from melt.run import reanalyse

RECIPE = """
name: llm
models:
  - id: tiny-llm
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: [16, 32], n_gen: 10}
    params: {threads: 1, n_ctx: 128}
protocol: {warmup: 1, repetitions: 10, min_duration_s: 0.2}
telemetry: {interval_ms: 50, idle_s: 0.2}
"""


def _steady(rows: list[dict]) -> None:
    """Every counted trial takes the median trial's timings from its own start, scaled by 0.98-1.02."""
    counted = [t for t in rows if not t.get("warmup")]
    median = sorted(counted, key=lambda t: t["duration_s"])[len(counted) // 2]
    start = median["t_start_ns"]
    for i, t in enumerate(counted):
        scale = 1 + 0.01 * ((i * 7) % 5 - 2)
        at = t["t_start_ns"]
        for key in ("t_tokenized_ns", "t_prefill_end_ns"):
            t[key] = at + int((median[key] - start) * scale)
        t["token_ns"] = [at + int((x - start) * scale) for x in median["token_ns"]]
        t["t_end_ns"] = t["token_ns"][-1]
        t["duration_s"] = median["duration_s"] * scale


def _copy_run(src, dst, hours: int, slow_decode: float = 1.0, steady: bool = False):
    """A copy of run folder src as dst (its name the run id), started `hours` later; decode gaps
    stretched by slow_decode; steady: see the module's doc."""
    shutil.copytree(src, dst)
    run_json = dst / "run.json"
    run = json.loads(run_json.read_text())
    started = datetime.fromisoformat(run["started_at"]) + timedelta(hours=hours)
    run.update(run_id=dst.name, started_at=started.isoformat(timespec="seconds"))
    run_json.write_text(json.dumps(run))
    (dst / "compare.json").unlink(missing_ok=True)
    if steady:  # its timings made steady, it is declared quiet too: no neighbour's CPU share holds its verdicts
        for case_json in (dst / "cases").glob("*/case.json"):
            case = json.loads(case_json.read_text())
            case["telemetry"].update(max_foreign_cpu_pct=1000.0, max_steal_pct=100.0)
            case_json.write_text(json.dumps(case))
    if slow_decode != 1.0 or steady:
        for trials in (dst / "cases").glob("*/trials.jsonl"):
            rows = [json.loads(line) for line in trials.read_text().splitlines()]
            if steady:
                _steady(rows)
            for t in rows:
                tok = t["token_ns"]
                t["token_ns"] = [tok[0] + int((x - tok[0]) * slow_decode) for x in tok]
                t["t_end_ns"] = t["token_ns"][-1]
            trials.write_text("".join(json.dumps(t) + "\n" for t in rows))
        reanalyse(dst)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("history")
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(folder, RECIPE)
    results = folder / "results"
    proc = run_melt("run", recipe, "--results", folder / "raw", "--run-id", "base", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _copy_run(folder / "raw" / "base", results / "base", hours=0, steady=True)
    _copy_run(results / "base", results / "same", hours=1)
    _copy_run(results / "base", results / "slow", hours=2, slow_decode=3.0)
    return folder, results


def test_identical_runs_compare_clean(runs, cli):
    """Two real `melt run`s of one recipe, back to back, as they came (their run-to-run noise and all). melt
    compare calls no change it cannot tell from run-to-run noise: without history, a change it calls is beyond
    what its assumed 10% lets one pair of runs show (-24% / +32%, compare.py), and most figures stay unchanged.
    It cannot promise more on this 2-core VM: identical runs of the tiny model, ~0.1 ms a token, have differed
    by 65% to twofold in decode rate with nothing else running, both marked valid; only history (3+ runs) or
    --run-noise-pct judges such a case better (README, "Compare")."""
    import math

    folder, _ = runs
    raw = folder / "raw"
    proc = run_melt("run", folder / "recipe.yaml", "--results", raw, "--run-id", "again", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    base_cases, new_cases = sorted((raw / "base" / "cases").iterdir()), sorted((raw / "again" / "cases").iterdir())
    assert [c.name for c in base_cases] == [c.name for c in new_cases] and len(base_cases) == 2
    for b, n in zip(base_cases, new_cases):  # two runs, not one run twice
        assert (b / "trials.jsonl").read_text() != (n / "trials.jsonl").read_text()
    code, out = cli("compare", "base", "again", "--results", raw)
    result = json.loads((raw / "again" / "compare.json").read_text())
    judged = [v for v in result["verdicts"] if v["verdict"] != "untested"]
    assert {v["metric"] for v in judged} >= {"prefill_tok_s", "decode_tok_s"}
    assert all(v["basis"] in ("assumed", "blocks", "catalog") for v in judged)  # said, never trials alone
    # a change melt saw made on a shared machine is not called (inconclusive, with the neighbour named)
    assert all("melt saw the machine shared" in v["reason"] for v in judged if v["verdict"] == "inconclusive")
    called = [v for v in judged if v["verdict"] in ("worse", "better")]
    assert all(abs(math.log1p(v["change_pct"] / 100)) > math.log(1.24) for v in called), out
    assert (code == 0) == (not any(v["verdict"] == "worse" for v in called)), out


def test_slowed_run_is_flagged_with_junit_and_markdown(runs, cli, tmp_path):
    folder, results = runs
    junit, md = tmp_path / "junit.xml", tmp_path / "compare.md"
    # told that runs of this machine differ by 60%, not even a threefold change is beyond doubt
    code, out = cli("compare", results / "base", results / "slow", "--run-noise-pct", "60")
    assert code == 0 and "an assumed 60% (no history; --run-noise-pct)" in out, out
    code, out = cli("compare", results / "base", results / "slow", "--junit", junit, "--markdown", md)
    assert code == 1, out
    verdicts = json.loads((results / "slow" / "compare.json").read_text())["verdicts"]
    decode = [v for v in verdicts if v["metric"] == "decode_tok_s"]
    itl = [v for v in verdicts if v["metric"] == "itl_p50_ms"]
    assert len(decode) == len(itl) == 2 and all(v["verdict"] == "worse" for v in decode + itl)
    assert all(v["change_pct"] == pytest.approx(-66.7, abs=1.5) for v in decode)  # 1 / 3
    assert all(v["change_pct"] == pytest.approx(200, abs=5) for v in itl)
    assert all(v["basis"] == "assumed" and NO_HISTORY in v["reason"] for v in decode + itl)
    assert all(v["verdict"] != "worse" for v in verdicts if v["metric"] == "prefill_tok_s")  # prefill untouched
    xml = JUnitXml.fromfile(str(junit))
    failures = [c.name for suite in xml for c in suite if c.result and type(c.result[0]).__name__ == "Failure"]
    assert any("[decode_tok_s]" in name for name in failures)
    assert md.read_text().startswith("### melt compare: REGRESSION") and "decode_tok_s" in md.read_text()
    assert "judged against the noise between runs" in md.read_text()
    assert "an assumed 10% (no history; --run-noise-pct)" in md.read_text()


NO_HISTORY = "judged against an assumed run-to-run noise of 10% (no history)"


def test_a_25pct_shift_without_history_is_run_to_run_noise(runs, cli):
    folder, results = runs
    cli("compare", "base", "slow", "--results", results)  # slow judged regressed: no history but base and same
    _copy_run(results / "base", results / "shifted", hours=4, slow_decode=1.25)  # the decode rate 20% lower
    code, out = cli("compare", "base", "shifted", "--results", results, "--all")
    assert code == 0, out
    decode = [v for v in json.loads((results / "shifted" / "compare.json").read_text())["verdicts"]
              if v["metric"] == "decode_tok_s"]  # fmt: skip
    assert len(decode) == 2 and all(v["change_pct"] == pytest.approx(-20, abs=1.5) for v in decode)
    assert all(v["verdict"] == "not significant" and NO_HISTORY in v["reason"] for v in decode)
    assert "an assumed 10% (no history; --run-noise-pct)" in out.splitlines()[1]  # the basis, said once
    # told to assume nothing, only what the runs themselves show (trials within 2%): a regression
    code, out = cli("compare", "base", "shifted", "--results", results, "--run-noise-pct", "0")
    assert code == 1, out
    # the basis is said once: nothing assumed, and where the steady copy's time blocks differ at all (its trials
    # are scaled by 0.98-1.02 in a cycle that a block may cut), their spread is what the change is judged against
    basis = out.splitlines()[1]
    assert "an assumed" not in out, out
    assert "none assumed (--run-noise-pct 0)" in basis or "the spread of the baseline's time blocks" in basis, out
    worse = {v["metric"] for v in json.loads((results / "shifted" / "compare.json").read_text())["verdicts"]
             if v["verdict"] == "worse"}  # fmt: skip
    assert {"decode_tok_s", "itl_p50_ms"} <= worse <= {"decode_tok_s", "itl_p50_ms", "e2e_s"}  # not prefill
    (results / "shifted" / "compare.json").unlink()  # a judged run leaves the history: not this one


def test_catalog_indexes_runs_and_rebuilds_from_files(runs, cli):
    folder, results = runs
    code, out = cli("results", "query", "SELECT run_id, cases_ok FROM runs ORDER BY started_at", "--format", "json",
                    "--results", results)  # fmt: skip
    assert code == 0, out
    assert [r["run_id"] for r in json.loads(out)][:3] == ["base", "same", "slow"]
    with Catalog.open(results) as catalog:
        n_samples = catalog.sql("SELECT count(*) AS n FROM samples WHERE run_id = 'base'")["n"][0]
        trials = sum(
            1
            for f in (results / "base" / "cases").glob("*/trials.jsonl")
            for line in f.read_text().splitlines()
            if not json.loads(line).get("warmup")
        )
        assert n_samples >= trials * 4  # ttft, prefill, decode, e2e, itl per counted trial
        first = catalog.sql("SELECT * FROM cases ORDER BY run_id, case_id")
    (results / CATALOG_NAME).unlink()
    with Catalog.open(results) as catalog:  # missing: rebuilt from the files, same content
        again = catalog.sql("SELECT * FROM cases ORDER BY run_id, case_id")
    assert again.equals(first)
    shutil.copytree(results / "same", results / "gone")
    run = json.loads((results / "gone" / "run.json").read_text())
    (results / "gone" / "run.json").write_text(json.dumps({**run, "run_id": "gone"}))
    with Catalog.open(results) as catalog:
        assert "gone" in set(catalog.sql("SELECT run_id FROM runs")["run_id"])
    shutil.rmtree(results / "gone")
    with Catalog.open(results) as catalog:  # a folder removed: its rows go too
        assert "gone" not in set(catalog.sql("SELECT run_id FROM runs")["run_id"])
        assert catalog.sql("SELECT count(*) AS n FROM samples WHERE run_id = 'gone'")["n"][0] == 0


def test_history_of_a_case(runs, cli):
    folder, results = runs
    with Catalog.open(results) as catalog:
        case_id = catalog.sql("SELECT case_id FROM cases WHERE run_id = 'base' LIMIT 1")["case_id"][0]
    code, out = cli("results", "history", "--case", case_id, "--metric", "decode_tok_s", "--format", "json",
                    "--results", results)  # fmt: skip
    assert code == 0, out
    rows = json.loads(out)
    by_run = {r["run_id"]: r for r in rows}
    assert {"base", "same", "slow"} <= set(by_run)
    for run_id, row in by_run.items():  # each run's own figures, as its analysis wrote them
        case_dir = results / run_id / "cases" / case_id
        summary = json.loads((case_dir / "metrics.json").read_text())["summary"]
        counted = [t for t in map(json.loads, (case_dir / "trials.jsonl").read_text().splitlines()) if not t["warmup"]]
        assert row["median"] == pytest.approx(summary["decode_tok_s"]) and row["n"] == len(counted) >= 10, run_id
    assert by_run["slow"]["median"] == pytest.approx(by_run["base"]["median"] / 3.0, rel=0.02)
    slow = json.loads((results / "slow" / "run.json").read_text())
    with Catalog.open(results) as catalog:  # what a comparison of `slow` takes its run-to-run spread from
        earlier = catalog.run_history([case_id], slow["started_at"], "slow")[case_id]["decode_tok_s"]
    assert earlier == pytest.approx([by_run["base"]["median"], by_run["same"]["median"]])
    code, out = cli("results", "history", "--results", results)
    assert code == 2 and "--case" in out


def test_baseline_window_skips_regressed_runs(runs, cli):
    folder, results = runs
    cli("compare", "base", "slow", "--results", results)  # marks slow as regressed
    _copy_run(results / "base", results / "later", hours=3)
    code, out = cli("compare", "--baseline-window", "5", "later", "--results", results)
    assert code == 0, out
    verdict = json.loads((results / "later" / "compare.json").read_text())
    assert sorted(verdict["base_runs"]) == ["base", "same"]  # not slow: a regression is not the new normal
    code, out = cli("compare", "--baseline-window", "1", "slow", "--results", results)
    assert code == 1 and "REGRESSION" in out
    assert json.loads((results / "slow" / "compare.json").read_text())["base_runs"] == ["same"]
    code, out = cli("compare", "base", "--results", results)
    assert code == 2 and "BASE_RUN NEW_RUN" in out


def test_catalog_held_by_another_process_is_built_in_memory(runs):
    folder, results = runs
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(results / CATALOG_NAME)!r}); "
         "print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        proc = run_melt("results", "query", "SELECT count(*) AS n FROM runs", "--format", "csv", "--results", results)
        assert proc.returncode == 0, proc.stderr
        assert "using one in memory" in proc.stderr
        assert int(proc.stdout.splitlines()[1]) >= 3
        assert time.monotonic() - started < 20
    finally:
        holder.kill()
