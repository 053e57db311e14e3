"""Phones over ADB: the transport calls the `adb` command line; a stand-in `adb` first on PATH
serves a phone folder (no phone and no adbd can run here) with the recorded Android sensor tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_melt

from melt.devices.profile import load_profile
from melt.devices.transport import AdbTransport, TransportError

LAB = Path(__file__).resolve().parent / "lab"


@pytest.fixture
def phone(tmp_path, monkeypatch):
    home = tmp_path / "phone with spaces"
    (home / "bin").mkdir(parents=True)
    getprop = home / "bin" / "getprop"
    getprop.write_text(
        '#!/bin/sh\ncase "$1" in ro.product.model) echo "Pixel 8";; ro.build.version.release) echo 14;; esac\n'
    )
    getprop.chmod(0o755)
    bench = home / "data/local/tmp/llama.cpp/bin/llama-bench"
    bench.parent.mkdir(parents=True)
    bench.write_text("#!/bin/sh\necho llama-bench stand-in\n")
    bench.chmod(0o755)
    monkeypatch.setenv("PATH", f"{LAB / 'adb'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MELT_FAKE_ADB_DEVICES", f"LAB0001={home}")
    profile = tmp_path / "pixel.yaml"
    profile.write_text(
        "name: lab-pixel\nplatform: android\ntransport: {kind: adb, serial: LAB0001}\n"
        f"workdir: {home}/data/local/tmp/melt\nllama_cpp_bin: {bench.parent}\n"
        f"sensors: {{root: {LAB / 'boards' / 'android-phone'}, battery: {{current_unit: uA}}}}\n"
    )
    return home, profile


def test_probe_over_adb(phone):
    home, profile = phone
    proc = run_melt("devices", "probe", profile, "--json")
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)
    assert env["environment"]["model"] == "Pixel 8" and env["environment"]["android"] == "14"
    assert env["environment"]["cpu_count"] == 4  # from the recorded tree's /proc/cpuinfo
    assert env["runtimes"]["llama_cpp_cli"]["available"] is True
    assert "no Python" in env["runtimes"]["llama_cpp"]["error"]
    sensors = env["sensors"]
    assert sensors["power_method"] == "battery" and sensors["power_total"] == "power.total_w"
    assert {"battery.power_w", "temp.battery_c", "cpu4.freq_mhz"} <= set(sensors["channels"])
    text = run_melt("devices", "probe", profile)
    assert text.returncode == 0 and "lab-pixel: Pixel 8" in text.stdout and "Android 14" in text.stdout
    assert "power method battery" in text.stdout


def test_unknown_serial_is_a_clear_error(phone, monkeypatch):
    _, profile = phone
    monkeypatch.setenv("MELT_FAKE_ADB_DEVICES", "SOMEONE_ELSE=/nowhere")
    proc = run_melt("devices", "probe", profile)
    assert proc.returncode == 1
    assert "adb device LAB0001" in proc.stderr and "not found" in proc.stderr and "adb devices" in proc.stderr


def test_shell_exit_status_push_pull_and_quoting(phone, tmp_path):
    home, profile = phone
    t = AdbTransport(load_profile(str(profile)).spec.transport)
    assert t.run(["sh", "-c", "exit 7"], 10).returncode == 7
    hostile = "a b $(touch pwned) `id`; c.txt"
    done = t.run(["sh", "-c", 'printf %s "$1" > "$1" && cat "$1"', "sh", hostile], 10)
    assert done.returncode == 0 and done.stdout == hostile and not list(home.rglob("pwned"))
    src = tmp_path / "local.bin"
    src.write_bytes(b"model bytes")
    (home / "dir").mkdir()
    t.push(src, str(home / "dir" / "remote.bin"), 10)
    back = tmp_path / "back"
    t.pull_dir(str(home / "dir"), back, 10)
    assert (back / "remote.bin").read_bytes() == b"model bytes"
    with pytest.raises(TransportError, match="push"):
        t.push(tmp_path / "missing", str(home / "dir" / "x"), 10)


def test_llama_bench_on_a_phone(phone, models, tmp_path, llama_bench_bin):
    """runtime llama_cpp_cli: the phone's llama-bench (real llama.cpp, run by the stand-in phone),
    the POSIX sh sampler on the recorded Android tree, results in the same layout as `local`."""
    import csv
    import subprocess
    import sys

    home, profile = phone
    bench = home / "data/local/tmp/llama.cpp/bin/llama-bench"
    bench.unlink()
    bench.symlink_to(llama_bench_bin)
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = tmp_path / "phone.yaml"
    recipe.write_text(
        "name: phone\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompt_tokens: [32], n_gen: 16}\n    params: {threads: 1}\n"
        "protocol: {warmup: 0, repetitions: 3}\ntelemetry: {interval_ms: 50, idle_s: 0.5}\n"
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "p")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "r" / "p"
    check = subprocess.run([sys.executable, str(LAB.parents[1].parent / "shared/tools/check_results.py"), str(run_dir)])
    assert check.returncode == 0
    (case_dir,) = (run_dir / "cases").iterdir()
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["test"] for t in trials) == ["pp"] * 3 + ["tg"] * 3
    metrics = json.loads((case_dir / "metrics.json").read_text())
    s = metrics["summary"]
    assert s["prefill_tok_s"] > 0 and s["decode_tok_s"] > 0 and s["n_trials"] == 3
    assert s["ttft_s"] is None and "report totals" in metrics["missing"]["ttft_s"]
    assert s["power_method"] == "battery" and s["temp_max_c"] == 41.2
    with (case_dir / "trace.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 10 and float(rows[-1]["battery.power_w"]) == pytest.approx(1.202147 * 4.13744, rel=1e-4)
    agent = json.loads((case_dir / "agent.json").read_text())
    assert agent["runtime"]["build_commit"] and {"idle", "prefill", "decode", "trials"} <= set(agent["phases"])
    assert metrics["telemetry"]["energy_method"].startswith("mean net power")


def test_real_prompts_on_a_phone(phone, models, tmp_path, llama_bench_bin):
    """runtime llama_cpp_cli with prompts: one llama-completion run per trial, read back from
    llama.cpp's own end-of-run timing lines."""
    home, profile = phone
    bin_dir = home / "data/local/tmp/llama.cpp/bin"
    (bin_dir / "llama-completion").symlink_to(llama_bench_bin.with_name("llama-completion"))
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text(
        json.dumps({"prompt": "We hold these truths to be self-evident"}) + "\n" + json.dumps({"prompt": "Life"}) + "\n"
    )
    recipe = tmp_path / "prompts.yaml"
    recipe.write_text(
        "name: prompts\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompts: prompts.jsonl, n_gen: 12}\n    params: {threads: 1}\n"
        "protocol: {warmup: 1, repetitions: 4}\ntelemetry: {interval_ms: 50, idle_s: 0.3}\n"
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "q" / "cases").iterdir()
    trials = {t["trial"]: t for t in map(json.loads, (case_dir / "trials.jsonl").read_text().splitlines())}
    agent = json.loads((case_dir / "agent.json").read_text())
    assert len(trials) + len(agent["lost_runs"]) == 5  # a run whose timing lines llama.cpp lost is said, not guessed
    assert agent["runs_repeated_for_lost_timings"] >= 0
    assert all(t["warmup"] is (i == 0) for i, t in trials.items())
    by_prompt = {i % 2: t["n_prompt"] for i, t in trials.items()}
    assert len(set(by_prompt.values())) == len(by_prompt)  # the two prompts, used in turn
    assert all(t["n_gen"] == 12 and t["decode_tok_s"] > 0 and t["load_s"] > 0 for t in trials.values())
    s = json.loads((case_dir / "metrics.json").read_text())["summary"]
    counted = len([t for t in trials.values() if not t["warmup"]])
    assert s["n_trials"] == counted >= 2 and s["prefill_tok_s"] > 0 and s["decode_tok_s"] > 0 and s["load_s"] > 0
    assert s["power_method"] == "battery"
