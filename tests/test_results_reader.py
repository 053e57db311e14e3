"""melt.results.reader: one reader of run folders for compare, catalog, report and export, with the schema
checked. A run written by a newer melt is refused by each verb with exit 2, naming run.json and the key,
and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from melt import SCHEMA_VERSION
from melt.errors import InputError
from melt.results.reader import check_schema, read_run


def write_run(folder: Path, schema_version=SCHEMA_VERSION, run_id: str = "r1") -> Path:
    """A run folder as melt writes it: one finished case with its case.json, metrics.json and trials, and one
    case that failed before it started."""
    run = folder / run_id
    case = run / "cases" / "c1"
    case.mkdir(parents=True)
    manifest = {"run_id": run_id, "status": "done", "recipe": {"name": "r"}, "started_at": "2026-11-30T00:00:00Z",
                "cases": {"c1": {"status": "ok", "device": "local", "model": "m", "label": "m p=1"},
                          "c2": {"status": "failed", "device": "pi", "model": "m", "label": "m p=2",
                                 "reason": "device pi unreachable"}}}  # fmt: skip
    if schema_version is not None:
        manifest["schema_version"] = schema_version
    (run / "run.json").write_text(json.dumps(manifest))
    case_json = {"case_id": "c1", "runtime": "onnxruntime", "device": "local", "model": "m", "label": "m p=1",
                 "params": {}, "workload": {}}  # fmt: skip
    (case / "case.json").write_text(json.dumps(case_json))
    (case / "metrics.json").write_text(json.dumps({"summary": {"latency_p50_ms": 1.5, "validity": "valid"}}))
    (case / "trials.jsonl").write_text('{"index": 0, "duration_s": 0.0015}\n')
    return run


def test_a_run_reads_as_typed_records(tmp_path):
    run = read_run(write_run(tmp_path))
    assert run.run_id == "r1" and [c.case_id for c in run.cases] == ["c1", "c2"]
    ok, failed = run.cases
    assert (ok.status, ok.runtime, ok.device, ok.summary["latency_p50_ms"]) == ("ok", "onnxruntime", "local", 1.5)
    assert ok.trials() == [{"index": 0, "duration_s": 0.0015}] and ok.folder == run.path / "cases" / "c1"
    assert (failed.status, failed.reason, failed.metrics, failed.case, failed.trials()) == (
        "failed", "device pi unreachable", None, {}, [])  # fmt: skip


@pytest.mark.parametrize("version", [None, 1])
def test_the_first_layout_and_a_run_json_without_a_version_are_read(tmp_path, version):
    assert read_run(write_run(tmp_path, version)).cases[0].summary["validity"] == "valid"


@pytest.mark.parametrize("version, expected", [(SCHEMA_VERSION + 1, f"at most {SCHEMA_VERSION}"), ("1", "positive"),
                                               (0, "positive"), (True, "positive")])  # fmt: skip
def test_a_newer_or_malformed_schema_is_refused_naming_file_and_key(tmp_path, version, expected):
    run = write_run(tmp_path, version)
    with pytest.raises(InputError) as e:
        read_run(run)
    assert f"{run / 'run.json'}: schema_version: expected" in str(e.value) and expected in str(e.value)
    with pytest.raises(InputError):
        check_schema({"schema_version": version}, run / "run.json")


def test_every_verb_that_reads_runs_refuses_a_newer_schema_and_writes_nothing(tmp_path, cli):
    old = write_run(tmp_path, SCHEMA_VERSION, "old")
    new = write_run(tmp_path, SCHEMA_VERSION + 1, "new")
    before = sorted(p for p in tmp_path.rglob("*"))
    verbs = (["compare", old, new], ["compare", new, old], ["report", new],
             ["results", "export", new, "--format", "md"], ["results", "export", new, "--format", "json"])  # fmt: skip
    for args in verbs:
        code, out = cli(*args)
        assert code == 2, (args, out)
        assert f"{new / 'run.json'}: schema_version: expected at most {SCHEMA_VERSION}" in out, (args, out)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no report, no compare.json, no catalog
