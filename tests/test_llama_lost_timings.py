"""llama.cpp can lose the last lines of a run's log, its timings among them (it leaks its async logger at
exit, upstream issue 22142). The tools session repeats such a llama-completion run, up to RUN_ATTEMPTS
times, counts the repeats in agent.json's runs_repeated_for_lost_timings, and fails a run whose lines are
still lost after the last attempt (and the case, when no counted run is left).

The tool is the real llama-completion behind a wrapper that cuts its log where the timing block begins on
the first runs it is told to: the loss llama.cpp shows, on demand. The wrapper keeps a ledger of what each
run's log said (kept or lost), so a loss of the real tool's own on top of the forced ones is counted too,
not taken for a fault of melt's."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from conftest import run_melt, write_recipe

from melt.runtimes.llama_cpp_cli import RUN_ATTEMPTS

# The wrapper: --help and the like go to the real tool untouched (melt reads its -fa form there); a run's
# log is cut from the line "... load time = ..." on (the timing block's first line in every llama.cpp era)
# for the first DROP runs. Runs under `env -i` on the "device": every path is spelled out.
WRAPPER = """#!/bin/sh
case " $* " in *" -m "*) ;; *) exec {real} "$@" ;; esac
L={ledger}
n=$(($(wc -l < "$L") + 1))
{real} "$@" 2> "$L.full"; rc=$?
if [ "$n" -le {drop} ]; then sed '/load time *=/,$d' "$L.full" > "$L.said"; else cp "$L.full" "$L.said"; fi
if grep -q "total time" "$L.said"; then echo kept >> "$L"; else echo lost >> "$L"; fi
cat "$L.said" >&2
exit $rc
"""


def _lossy_tools(folder: Path, real: Path, drop: int) -> tuple[Path, Path]:
    """A llama.cpp bin folder whose llama-completion loses its timing lines on its first `drop` runs; and the
    ledger it writes (one line per timed run: kept or lost)."""
    bin_dir = folder / "llama.cpp"
    bin_dir.mkdir()
    (bin_dir / "llama-bench").symlink_to(real.with_name("llama-bench"))  # what melt's probe looks for
    ledger = folder / "ledger"
    ledger.touch()
    tool = bin_dir / "llama-completion"
    tool.write_text(WRAPPER.format(real=shlex.quote(str(real)), ledger=shlex.quote(str(ledger)), drop=drop))
    tool.chmod(0o755)
    return bin_dir, ledger


def _run(tmp_path: Path, models, llama_bench_bin: Path, drop: int, warmup: int, repetitions: int):
    """`melt run` of one llama_cpp_cli prompts case on the local transport with the lossy tool; (process,
    case folder, agent.json, the ledger's lines)."""
    bin_dir, ledger = _lossy_tools(tmp_path, llama_bench_bin.with_name("llama-completion"), drop)
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "We hold these truths to be self-evident"}) + "\n")
    profile = tmp_path / "here.yaml"
    profile.write_text(f"name: here\ntransport: {{kind: local}}\nllama_cpp_bin: {bin_dir}\n")
    recipe = write_recipe(
        tmp_path,
        f"""
        name: lossy
        models:
          - id: tiny
            runtime: llama_cpp_cli
            source: {{path: tiny.gguf}}
            workload: {{prompts: prompts.jsonl, n_gen: 4}}
            params: {{threads: 1}}
        protocol: {{warmup: {warmup}, repetitions: {repetitions}}}
        telemetry: {{interval_ms: 0, idle_s: 0}}
        """,
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "l")
    (case_dir,) = (tmp_path / "r" / "l" / "cases").iterdir()
    agent = json.loads((case_dir / "agent.json").read_text())
    return proc, case_dir, agent, ledger.read_text().split()


def test_a_run_that_lost_its_timings_is_repeated_and_counted(tmp_path, models, llama_bench_bin):
    """The first two runs lose their timing block: the first trial is run again until its lines come, each
    repeat counted; every trial is then read, none failed."""
    proc, case_dir, agent, ledger = _run(tmp_path, models, llama_bench_bin, drop=2, warmup=1, repetitions=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ledger[:2] == ["lost", "lost"]  # the forced losses (the real tool may lose more of its own)
    repeats = ledger.count("lost")
    assert len(ledger) == 3 + repeats  # three trials, each run until its lines came
    assert agent["runs_repeated_for_lost_timings"] == repeats
    assert (case_dir / "lost_runs.txt").read_text().split()[:2] == ["trial_0", "trial_0"]
    assert agent["status"] == "ok" and agent["failed_runs"] == []
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines()]
    assert [t["trial"] for t in trials] == [0, 1, 2] and [t["warmup"] for t in trials] == [True, False, False]
    assert all(t["n_gen"] == 4 and t["decode_tok_s"] > 0 for t in trials)
    assert "trial_0" in agent["phases"]  # the attempt that was read is the trial's span


def test_a_run_still_without_timings_after_the_last_attempt_fails_the_case(tmp_path, models, llama_bench_bin):
    """Every run loses its timing block: the one counted trial is tried RUN_ATTEMPTS times, then failed naming
    the lines it lacks; with no counted trial left the case fails, and melt run exits 1."""
    proc, case_dir, agent, ledger = _run(tmp_path, models, llama_bench_bin, drop=1000, warmup=0, repetitions=1)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ledger == ["lost"] * RUN_ATTEMPTS  # tried exactly that often, then given up
    assert agent["runs_repeated_for_lost_timings"] == RUN_ATTEMPTS - 1  # repeats: the first try is not one
    assert agent["status"] == "failed" and (case_dir / "trials.jsonl").read_text() == ""
    (failed,) = agent["failed_runs"]
    assert failed["trial"] == 0 and failed["warmup"] is False
    # the last attempt's log ends at the sampler's lines: what is missing is named
    assert "samplers time" in (case_dir / "trial_0.log").read_text().strip().splitlines()[-1]
    assert failed["reason"] == "run 0: no readable 'prompt eval time' line; no readable 'eval time' line"
    assert agent["error"] == f"no counted run gave readable timings: {failed['reason']}"
    (entry,) = json.loads((tmp_path / "r" / "l" / "run.json").read_text())["cases"].values()
    assert entry["status"] == "failed" and "no counted run gave readable timings" in entry["reason"]
