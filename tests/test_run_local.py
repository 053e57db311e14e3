"""End-to-end `melt run` on the `local` device through the real CLI, with real llama.cpp and ONNX
Runtime on tiny models the tests write; failures, interruption and --resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_melt, spawn_melt, wait_for_cases, write_recipe

CHECK_RESULTS = ROOT / "tests" / "vendor" / "check_results.py"  # ../shared/tools/check_results.py, vendored

RECIPE = """
name: e2e
models:
  - id: tiny-llm
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: [16, 600], n_gen: 12}
    params: {threads: 1, n_ctx: 1024, n_batch: 256}
  - id: tiny-llm-prompts
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompts: prompts.jsonl, n_gen: 5}
  - id: tiny-vad
    runtime: onnxruntime
    source: {path: tiny_vad.onnx}
    workload:
      inputs:
        input: {shape: [1, 512]}
        state: {shape: [2, 1, 16]}
        sr: {value: 16000}
    params: {intra_op_threads: [1, 2], graph_optimization_level: all}
  - id: tiny-static
    runtime: onnxruntime
    source: {path: tiny_static.onnx}
protocol: {warmup: 1, repetitions: 4, min_duration_s: 0.05, max_repetitions: 2000}
telemetry: {interval_ms: 50, idle_s: 0.2}
"""


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("e2e")
    for path in models.values():
        (folder / path.name).symlink_to(path)
    (folder / "prompts.jsonl").write_text(
        json.dumps({"prompt": "We hold these truths to be self-evident"})
        + "\n"
        + json.dumps({"prompt": "Life, Liberty"})
        + "\n"
    )
    recipe = write_recipe(folder, RECIPE)
    proc = run_melt("run", recipe, "--results", folder / "results", "--run-id", "r1", cwd=folder)
    return folder, proc, folder / "results" / "r1"


def test_run_writes_the_results_contract(e2e):
    folder, proc, run_dir = e2e
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-2:] == [f"results: {run_dir}", f"report: {run_dir / 'report.html'}"]
    check = subprocess.run([sys.executable, str(CHECK_RESULTS), str(run_dir)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    rows = read_csv(run_dir / "summary.csv")
    assert len(rows) == 6
    assert {r["model"] for r in rows} == {"tiny-llm", "tiny-llm-prompts", "tiny-vad", "tiny-static"}
    for r in rows:
        assert int(r["n_trials"]) >= 4 and r["validity"] in ("valid", "semivalid")
        assert r["energy_j"] == "" and r["power_method"] == "none"  # not measured here: empty, never invented
        if r["runtime"] == "llama_cpp":
            assert r["latency_p50_ms"] == "" and float(r["itl_p90_ms"]) >= float(r["itl_p50_ms"]) > 0
        else:
            assert r["decode_tok_s"] == "" and float(r["latency_p99_ms"]) >= float(r["latency_p50_ms"]) > 0


def test_run_json_records_provenance(e2e):
    _, _, run_dir = e2e
    run = json.loads((run_dir / "run.json").read_text())
    assert run["schema_version"] == 1 and run["status"] == "complete"
    assert run["recipe"]["resolved"]["protocol"]["repetitions"] == 4
    assert len(run["models"]["tiny-llm"]["sha256"]) == 64
    device = run["devices"]["local"]
    assert device["runtimes"]["llama_cpp"]["llama_cpp_python"]
    assert device["runtimes"]["onnxruntime"]["onnxruntime"]
    assert device["environment"]["cpu_count"] >= 1 and device["environment"]["kernel"]
    assert run["host"]["packages"]["llama_cpp_python"] and run["host"]["melt"]
    assert all(c["status"] == "ok" and c["started_at"] and c["ended_at"] for c in run["cases"].values())


def cases_of(run_dir: Path, model: str) -> list[Path]:
    return [d for d in (run_dir / "cases").iterdir() if json.loads((d / "case.json").read_text())["model"] == model]


def test_llama_trials_hold_every_token_and_exact_prompts(e2e):
    _, _, run_dir = e2e
    seen_lengths = set()
    for case_dir in cases_of(run_dir, "tiny-llm"):
        case = json.loads((case_dir / "case.json").read_text())
        trials = read_jsonl(case_dir / "trials.jsonl")
        warm = [t for t in trials if t["warmup"]]
        counted = [t for t in trials if not t["warmup"]]
        assert len(warm) == 1 and len(counted) >= 4
        for t in trials:
            assert t["n_prompt"] == case["workload"]["prompt_tokens"]  # exactly N tokens
            assert len(t["token_ns"]) == t["n_gen"] == 12  # fixed count, EOS ignored
            assert (
                t["token_ns"] == sorted(t["token_ns"])
                and t["t_start_ns"] < t["t_tokenized_ns"] <= t["t_prefill_end_ns"]
            )
            assert t["llama_perf"]["n_p_eval"] == t["n_prompt"]
        assert len({tuple(t["tokens"]) for t in trials}) == 1  # greedy: every trial generates the same tokens
        seen_lengths.add(case["workload"]["prompt_tokens"])
        metrics = json.loads((case_dir / "metrics.json").read_text())
        assert metrics["summary"]["n_trials"] == len(counted)
        assert metrics["spread"]["decode_tok_s"]["n"] == len(counted)
        agent = json.loads((case_dir / "agent.json").read_text())
        assert agent["load"]["effective_params"]["threads"] == 1 and agent["load"]["effective_params"]["n_batch"] == 256
        assert agent["peak_rss_mb"] >= agent["rss_after_load_mb"] > 0
    assert seen_lengths == {16, 600}


def test_jsonl_prompts_are_used_in_turn(e2e):
    _, _, run_dir = e2e
    (case_dir,) = cases_of(run_dir, "tiny-llm-prompts")
    trials = read_jsonl(case_dir / "trials.jsonl")
    lengths = [t["n_prompt"] for t in trials]
    assert lengths[0] == lengths[2] != lengths[1] == lengths[3]


def test_onnx_case_uses_recipe_inputs_and_params(e2e):
    _, _, run_dir = e2e
    vad = cases_of(run_dir, "tiny-vad")
    threads = set()
    for case_dir in vad:
        agent = json.loads((case_dir / "agent.json").read_text())
        assert agent["load"]["model"]["fed_shapes"] == {"input": [1, 512], "state": [2, 1, 16], "sr": []}
        threads.add(agent["load"]["effective_params"]["intra_op_threads"])
        assert agent["load"]["effective_params"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
        counted = [t for t in read_jsonl(case_dir / "trials.jsonl") if not t["warmup"]]
        # the stopping rule at whatever speed this machine runs: trials went on until repetitions (4) and
        # min_duration_s (0.05) were both met, or to the cap (2000), and stopped at the first trial that did
        seconds = [t["duration_s"] for t in counted]
        met = len(counted) >= 4 and sum(seconds) >= 0.05
        assert met or len(counted) == 2000
        assert not (len(counted) - 1 >= 4 and sum(seconds[:-1]) >= 0.05), "ran past the trial that met the rule"
        stopped = "repetitions and min_duration_s met" if met else "max_repetitions (2000) reached"
        assert agent["protocol"]["stopped_because"] == stopped
        assert agent["protocol"]["counted_trials"] == len(counted)
    assert threads == {1, 2}


def test_the_repetition_cap_stops_a_case_and_says_so(workdir):
    """A case that can never reach its min_duration_s (a day) stops at max_repetitions, at any speed, and is
    semivalid saying why (the cap, too short). timeout_s bounds it should the cap not hold."""
    recipe = write_recipe(
        workdir,
        """
        name: cap
        models:
          - id: static
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
        protocol: {warmup: 1, repetitions: 3, min_duration_s: 86400, max_repetitions: 7, timeout_s: 120}
        telemetry: {interval_ms: 0, idle_s: 0}
        """,
    )
    proc = run_melt("run", recipe, "--results", workdir / "results", "--run-id", "cap")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (workdir / "results" / "cap" / "cases").iterdir()
    trials = read_jsonl(case_dir / "trials.jsonl")
    assert [t["warmup"] for t in trials] == [True] + [False] * 7
    agent = json.loads((case_dir / "agent.json").read_text())
    assert agent["protocol"]["stopped_because"] == "max_repetitions (7) reached"
    assert agent["protocol"]["counted_trials"] == 7
    metrics = json.loads((case_dir / "metrics.json").read_text())
    assert metrics["summary"]["n_trials"] == 7 and metrics["validity"]["verdict"] == "semivalid"
    reasons = metrics["validity"]["reasons"]
    assert "stopped at the cap: max_repetitions (7) reached" in reasons
    assert any(r.startswith("too short: counted trials took") and "< min_duration_s 86400" in r for r in reasons)


def test_results_list_show_export(e2e):
    folder, _, run_dir = e2e
    listing = run_melt("results", "list", "--results", folder / "results")
    assert listing.returncode == 0 and "r1" in listing.stdout and "6/6 ok" in listing.stdout
    md = run_melt("results", "export", run_dir, "--format", "md")
    assert md.returncode == 0 and md.stdout.count("\n| local |") == 6
    data = json.loads(run_melt("results", "export", run_dir, "--format", "json").stdout)
    assert len(data["cases"]) == 6 and "energy_j" in data["cases"][0]["missing"]
    assert run_melt("results", "export", run_dir, "--format", "csv").stdout == (run_dir / "summary.csv").read_text()
    assert "tiny-vad" in run_melt("results", "show", run_dir).stdout


def test_existing_run_id_is_refused_without_resume(e2e):
    folder, _, _ = e2e
    proc = run_melt("run", folder / "recipe.yaml", "--results", folder / "results", "--run-id", "r1")
    assert proc.returncode == 2 and "--resume" in proc.stderr
    proc = run_melt("run", folder / "recipe.yaml", "--results", folder / "results", "--run-id", "nope", "--resume")
    assert proc.returncode == 2 and not (folder / "results" / "nope").exists()


def test_failed_case_is_recorded_and_the_run_goes_on(workdir):
    recipe = write_recipe(
        workdir,
        """
        name: fail
        models:
          - id: static
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
            params: {execution_provider: [NoSuchExecutionProvider, CPUExecutionProvider]}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0}
        telemetry: {interval_ms: 50, idle_s: 0.2}
        """,
    )
    proc = run_melt("run", recipe, "--results", workdir / "results", "--run-id", "f")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--resume" in proc.stderr
    run = json.loads((workdir / "results" / "f" / "run.json").read_text())
    statuses = sorted((c["label"], c["status"], c["reason"] or "") for c in run["cases"].values())
    assert statuses[0][1] == "ok"
    assert "not available here; available: [" in statuses[1][2] and "'CPUExecutionProvider'" in statuses[1][2]
    assert run["status"] == "partial"
    assert len(read_csv(workdir / "results" / "f" / "summary.csv")) == 1


def test_interrupted_run_resumes_only_what_is_missing(workdir):
    recipe = write_recipe(
        workdir,
        """
        name: resume
        models:
          - id: static
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
            params: {intra_op_threads: [1, 2, 3, 4]}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0.7}
        telemetry: {interval_ms: 50, idle_s: 0.2}
        """,
    )
    results = workdir / "results"
    proc = spawn_melt("run", recipe, "--results", results, "--run-id", "r")
    run_json = results / "r" / "run.json"
    wait_for_cases(run_json, lambda cases: any(c["status"] == "ok" for c in cases), 60)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    run = json.loads(run_json.read_text())
    assert run["status"] == "interrupted"
    done = {cid for cid, c in run["cases"].items() if c["status"] == "ok"}
    assert 1 <= len(done) < 4
    assert any(c["reason"] == "interrupted" for c in run["cases"].values())
    assert not any(p.cmdline()[-1].endswith(tuple(run["cases"])) for p in _agents())  # no agent left behind
    kept = {cid: os.stat(results / "r" / "cases" / cid / "trials.jsonl").st_mtime_ns for cid in done}

    again = run_melt("run", recipe, "--results", results, "--run-id", "r", "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(done)} cases already done, kept" in again.stdout
    run = json.loads(run_json.read_text())
    assert run["status"] == "complete" and len(run["resumed_at"]) == 1
    assert all(c["status"] == "ok" for c in run["cases"].values())
    assert kept == {cid: os.stat(results / "r" / "cases" / cid / "trials.jsonl").st_mtime_ns for cid in done}
    assert len(read_csv(results / "r" / "summary.csv")) == 4


def _agents():
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        try:
            line = " ".join(p.info["cmdline"] or [])
            if "melt.agent" in line or "melt-agent-" in line:
                yield p
        except psutil.Error:
            continue


def test_case_past_its_deadline_is_killed_and_marked(workdir):
    recipe = write_recipe(
        workdir,
        """
        name: slow
        models:
          - id: static
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 30, timeout_s: 1.5}
        telemetry: {interval_ms: 50, idle_s: 0.2}
        """,
    )
    started = time.monotonic()
    proc = run_melt("run", recipe, "--results", workdir / "results", "--run-id", "slow")
    assert time.monotonic() - started < 20
    assert proc.returncode == 1
    run = json.loads((workdir / "results" / "slow" / "run.json").read_text())
    (entry,) = run["cases"].values()
    assert entry["status"] == "failed" and "timed out after 1.5 s" in entry["reason"]
    assert not any(p.cmdline()[-1].endswith(tuple(run["cases"])) for p in _agents())  # this run's agent is gone


def test_killed_agent_is_a_failed_case_with_the_reason(workdir):
    """An agent killed mid-case (as the OOM killer does) fails that case only."""
    wrapper = workdir / "python-oom"
    wrapper.write_text(
        "#!/bin/sh\n"
        '# a device whose agent gets SIGKILLed while running the "doomed" case\n'
        "for a; do last=$a; done\n"
        'case "$*" in *" run "*) grep -q doomed "$last/case.json" && kill -9 $$ ;; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    profile = workdir / "oom.yaml"
    profile.write_text(f"name: oomy\ntransport: {{kind: local}}\npython: {wrapper}\n")
    recipe = write_recipe(
        workdir,
        """
        name: oom
        models:
          - id: doomed
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
          - id: fine
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 0}
        telemetry: {interval_ms: 50, idle_s: 0.2}
        """,
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", workdir / "results", "--run-id", "oom")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = json.loads((workdir / "results" / "oom" / "run.json").read_text())
    by_model = {c["model"]: c for c in run["cases"].values()}
    assert by_model["doomed"]["status"] == "failed" and "SIGKILL" in by_model["doomed"]["reason"]
    assert by_model["fine"]["status"] == "ok"
    assert [r["model"] for r in read_csv(workdir / "results" / "oom" / "summary.csv")] == ["fine"]


def test_resume_refuses_a_changed_recipe(workdir):
    body = """
        name: same
        models:
          - id: static
            runtime: onnxruntime
            source: {path: tiny_static.onnx}
        protocol: {warmup: 0, repetitions: REPS, min_duration_s: 0}
        telemetry: {interval_ms: 50, idle_s: 0.2}
        """
    recipe = write_recipe(workdir, body.replace("REPS", "3"))
    assert run_melt("run", recipe, "--results", workdir / "results", "--run-id", "s").returncode == 0
    write_recipe(workdir, body.replace("REPS", "4"))
    proc = run_melt("run", recipe, "--results", workdir / "results", "--run-id", "s", "--resume")
    assert proc.returncode == 2 and "a changed recipe" in proc.stderr and "Start a new run" in proc.stderr


def test_llama_cpp_refusal_carries_llama_cpp_reason(workdir):
    recipe = write_recipe(
        workdir,
        """
        name: kv
        models:
          - id: tiny
            runtime: llama_cpp
            source: {path: tiny.gguf}
            workload: {prompt_tokens: 16, n_gen: 4}
            params: {threads: 1, flash_attn: false, cache_type_v: q8_0}
        protocol: {warmup: 0, repetitions: 2, min_duration_s: 0}
        telemetry: {interval_ms: 50, idle_s: 0.2}
        """,
    )
    proc = run_melt("run", recipe, "--results", workdir / "results", "--run-id", "kv")
    assert proc.returncode == 1
    (entry,) = json.loads((workdir / "results" / "kv" / "run.json").read_text())["cases"].values()
    assert "Failed to create llama_context" in entry["reason"]
    assert "llama.cpp said:" in entry["reason"] and "quantized V cache requires flash_attn" in entry["reason"]
