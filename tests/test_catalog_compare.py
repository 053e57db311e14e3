"""The results catalog (DuckDB over the files) and `melt compare` on real run folders: a real run
of a tiny model, an identical copy, a copy whose decode was slowed threefold on purpose, and one whose
decode is 25% slower (as identical runs can be here)."""

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


def _copy_run(results, src: str, dst: str, hours: int, slow_decode: float = 1.0):
    """A copy of a run under a new id, started `hours` later; decode gaps stretched by slow_decode."""
    shutil.copytree(results / src, results / dst)
    run_json = results / dst / "run.json"
    run = json.loads(run_json.read_text())
    started = datetime.fromisoformat(run["started_at"]) + timedelta(hours=hours)
    run.update(run_id=dst, started_at=started.isoformat(timespec="seconds"))
    run_json.write_text(json.dumps(run))
    for path in (results / dst / "compare.json",):
        path.unlink(missing_ok=True)
    if slow_decode != 1.0:
        for trials in (results / dst / "cases").glob("*/trials.jsonl"):
            rows = [json.loads(line) for line in trials.read_text().splitlines()]
            for t in rows:
                tok = t["token_ns"]
                t["token_ns"] = [tok[0] + int((x - tok[0]) * slow_decode) for x in tok]
                t["t_end_ns"] = t["token_ns"][-1]
            trials.write_text("".join(json.dumps(t) + "\n" for t in rows))
        reanalyse(results / dst)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("history")
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(folder, RECIPE)
    results = folder / "results"
    proc = run_melt("run", recipe, "--results", results, "--run-id", "base", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _copy_run(results, "base", "same", hours=1)
    _copy_run(results, "base", "slow", hours=2, slow_decode=3.0)
    return folder, results


def test_identical_runs_compare_clean(runs, cli):
    folder, results = runs
    code, out = cli("compare", "base", "same", "--results", results)
    assert code == 0, out
    assert out.startswith("no regression") and "worse" not in out.split("\n", 1)[1]
    verdicts = json.loads((results / "same" / "compare.json").read_text())
    assert not verdicts["regressed"] and verdicts["counts"]["not significant"] > 0


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
    assert len(decode) == len(itl) == 2 and all(v["verdict"] == "worse" for v in itl)
    assert all(v["change_pct"] == pytest.approx(-66.7, abs=1.5) for v in decode)  # 1 / 3
    assert all(v["change_pct"] == pytest.approx(200, abs=5) for v in itl)
    # a tiny model's trial is ~1 ms: on a busy machine a preempted trial is several times slower,
    # and where a run's own blocks wander that much its decode median is judged uncertain, said so
    assert all(v["verdict"] == "worse" or "alone, a change must pass" in v["reason"] for v in decode)
    assert all(_says_its_basis(v) for v in decode + itl)
    assert all(v["verdict"] != "worse" for v in verdicts if v["metric"] == "prefill_tok_s")  # prefill untouched
    xml = JUnitXml.fromfile(str(junit))
    failures = [c.name for suite in xml for c in suite if c.result and type(c.result[0]).__name__ == "Failure"]
    assert any("[itl_p50_ms]" in name for name in failures)
    assert md.read_text().startswith("### melt compare: REGRESSION") and "itl_p50_ms" in md.read_text()
    assert "judged against the noise between runs" in md.read_text()
    assert "an assumed 10% (no history; --run-noise-pct)" in md.read_text()


NO_HISTORY = {
    "assumed": "an assumed run-to-run noise of 10% (no history)",
    "blocks": "the spread of the baseline's own time blocks",  # a tiny model's runs wander on a busy machine
}


def _says_its_basis(v: dict) -> bool:
    """Without history: the noise is the assumed floor, or the baseline's blocks where they spread more."""
    return v["basis"] in NO_HISTORY and NO_HISTORY[v["basis"]] in v["reason"]


def test_a_25pct_shift_without_history_is_run_to_run_noise(runs, cli):
    folder, results = runs
    _copy_run(results, "base", "shifted", hours=4, slow_decode=1.25)  # the decode rate 20% lower
    code, out = cli("compare", "base", "shifted", "--results", results, "--all")
    assert code == 0, out
    decode = [v for v in json.loads((results / "shifted" / "compare.json").read_text())["verdicts"]
              if v["metric"] == "decode_tok_s"]  # fmt: skip
    assert len(decode) == 2 and all(v["change_pct"] == pytest.approx(-20, abs=1.5) for v in decode)
    assert all(v["verdict"] == "not significant" and _says_its_basis(v) for v in decode)
    assert "an assumed 10% (no history; --run-noise-pct)" in out.splitlines()[1]  # the basis, said once
    p_assumed = _p_values(results / "shifted")
    # told to assume nothing: only what the runs themselves show (their blocks), a smaller yardstick
    code, out = cli("compare", "base", "shifted", "--results", results, "--run-noise-pct", "0")
    assert "assumed" not in out and "the spread of the baseline's time blocks" in out.splitlines()[1], out
    p_own = _p_values(results / "shifted")
    assert p_own.keys() == p_assumed.keys() and all(p_own[k] <= p_assumed[k] for k in p_own)
    (results / "shifted" / "compare.json").unlink()  # a judged run leaves the history: not this one


def _p_values(run_dir) -> dict:
    verdicts = json.loads((run_dir / "compare.json").read_text())["verdicts"]
    return {(v["case_id"], v["metric"]): v["p_value"] for v in verdicts if v["p_value"] is not None}


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
    assert by_run["same"]["median"] == pytest.approx(by_run["base"]["median"])
    assert by_run["slow"]["median"] == pytest.approx(by_run["base"]["median"] / 3.0, rel=0.02)
    assert all(r["n"] == 10 or r["n"] > 10 for r in rows)
    slow = json.loads((results / "slow" / "run.json").read_text())
    with Catalog.open(results) as catalog:  # what a comparison of `slow` takes its run-to-run spread from
        earlier = catalog.run_history([case_id], slow["started_at"], "slow")[case_id]["decode_tok_s"]
    assert earlier == pytest.approx([by_run["base"]["median"], by_run["same"]["median"]])
    code, out = cli("results", "history", "--results", results)
    assert code == 2 and "--case" in out


def test_baseline_window_skips_regressed_runs(runs, cli):
    folder, results = runs
    cli("compare", "base", "slow", "--results", results)  # marks slow as regressed
    _copy_run(results, "base", "later", hours=3)
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
