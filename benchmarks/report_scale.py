"""Report at scale: a synthetic run of 100 cases, each with a 10-minute trace at 10 Hz, then the
time and size of `melt report` on it. Budget (DESIGN.md): < 10 s and < 15 MB.

The run is written in the results layout as real runs write it (run.json, summary.csv, and per
case case.json, agent.json, trials.jsonl, trace.csv, sensors.json, metrics.json); metrics.json and
summary.csv come from melt's own analysis of the synthetic raw files, as `melt run` derives them.
The synthetic devices look like Jetson-class boards: INA3221 power rails, eight thermal zones, one
cpufreq policy of six cores that caps its frequency when the board runs hot (throttled spans).

Usage: .venv/bin/python benchmarks/report_scale.py [--cases 100] [--minutes 10] [--hz 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import add_out_arg, kept_output  # noqa: E402

from melt.analysis.metrics import case_metrics  # noqa: E402
from melt.analysis.trace import read_trace  # noqa: E402
from melt.report.html import write_report  # noqa: E402
from melt.results.layout import RunDir, read_trials, write_json  # noqa: E402

BUDGET_S = 10.0
BUDGET_MB = 15.0
DEVICES = ["orin-nano-a", "orin-nano-b", "orin-nx", "agx-orin"]
LLMS = [("llama-3.2-1b-q4km", 0.8e9, 1.0), ("qwen2.5-0.5b-q8", 0.55e9, 1.6), ("gemma3-270m-q4km", 0.25e9, 2.6)]
ONNX = [("ppocr-v4-det", 4.7e6, 90.0), ("mobilenet-v3", 22e6, 40.0), ("yolov8n", 12.8e6, 60.0)]
ONNX_TRIALS_S = 120  # then the device cools down for the rest of the trace
ZONES = ["cpu", "gpu", "soc0", "soc1", "soc2", "cv0", "cv1", "tj"]
NS = 1_000_000_000


def plan(n_cases: int) -> list[dict]:
    """Cases spread over devices, models and params, llama.cpp and ONNX mixed, until n_cases."""
    cases = []
    grid = [("llama_cpp", m, p, t) for m in LLMS for p in (128, 512, 1024) for t in (2, 4, 6)]
    grid += [("onnxruntime", m, None, t) for m in ONNX for t in (1, 2, 4, 6)]
    i = 0
    while len(cases) < n_cases:
        runtime, model, prompt, threads = grid[i % len(grid)]
        device = DEVICES[(i // len(grid)) % len(DEVICES)]
        cases.append({"device": device, "runtime": runtime, "model": model, "prompt": prompt, "threads": threads})
        i += 1
    return cases


def phases_ns(t0_ns: int, minutes: float) -> dict:
    idle, load, cool = 10 * NS, 4 * NS, 15 * NS
    total = int(minutes * 60 * NS)
    trials_end = t0_ns + total - cool
    return {
        "idle": [t0_ns + NS, t0_ns + NS + idle],
        "load": [t0_ns + NS + idle, t0_ns + NS + idle + load],
        "trials": [t0_ns + NS + idle + load, trials_end],
        "cooldown": [trials_end, t0_ns + total],
    }


def llama_trials(rng, phases: dict, prompt: int, speed: float) -> tuple[list[dict], list[tuple[int, int, int]]]:
    """Trials back to back through the trials window; returns rows and (start, prefill end, end)."""
    t, end = phases["trials"]
    n_gen = 128
    rows, windows, i = [], [], 0
    while True:
        prefill_s = prompt / (600 * speed) * rng.uniform(0.97, 1.05)
        gaps = rng.lognormal(np.log(1 / (22 * speed)), 0.08, n_gen - 1)
        tokenized = t + int(0.002 * NS)
        prefill_end = tokenized + int(prefill_s * NS)
        first = prefill_end + int(gaps[0] * NS)
        tokens = (first + np.concatenate([[0], np.cumsum(gaps[1:] * NS)]).astype(np.int64)).tolist()
        tokens.append(tokens[-1] + int(gaps[-1] * NS))
        tokens = tokens[:n_gen]
        if tokens[-1] + int(0.2 * NS) > end:
            break
        rows.append(
            {"trial": i, "warmup": i == 0, "duration_s": (tokens[-1] - t) / NS, "n_prompt": prompt, "n_gen": n_gen,
             "t_start_ns": t, "t_tokenized_ns": tokenized, "t_prefill_end_ns": prefill_end, "token_ns": tokens}
        )  # fmt: skip
        windows.append((tokenized, prefill_end, tokens[-1]))
        t = tokens[-1] + int(0.2 * NS)
        i += 1
    return rows, windows


def onnx_trials(rng, phases: dict, latency_ms: float) -> tuple[list[dict], list[tuple[int, int, int]]]:
    t = phases["trials"][0]
    end = t + ONNX_TRIALS_S * NS
    phases["trials"][1] = phases["cooldown"][0] = end
    durations = rng.lognormal(np.log(latency_ms / 1e3), 0.06, int((end - t) / NS / latency_ms * 1e3) + 10)
    rows = []
    for i, d in enumerate(durations):
        t_end = t + int(d * NS)
        if t_end > end:
            break
        rows.append({"trial": i, "warmup": i == 0, "duration_s": float(d), "t_start_ns": t, "t_end_ns": t_end})
        t = t_end + 200_000
    return rows, [(phases["trials"][0], phases["trials"][0], end)]


def trace(rng, t0_ns: int, minutes: float, hz: float, phases: dict, windows, hot: bool) -> pd.DataFrame:
    """Sensor samples as the sampler writes them: util, memory, cpufreq, thermal, INA3221 power."""
    n = int(minutes * 60 * hz)
    t = t0_ns / NS + np.arange(n) / hz + rng.normal(0, 0.002, n)
    load = np.zeros(n)
    a, b = phases["trials"]
    load[(t >= a / NS) & (t <= b / NS)] = 0.75
    for start, prefill_end, end in windows:
        load[(t >= start / NS) & (t < prefill_end / NS)] = 1.0
        load[(t >= prefill_end / NS) & (t <= end / NS)] = 0.8
    load[(t >= phases["load"][0] / NS) & (t < phases["load"][1] / NS)] = 0.5
    heat = np.convolve(load, np.exp(-np.arange(600) / (90 * hz / 10)), mode="full")[:n]
    heat = heat / heat.max() if heat.max() else heat
    temp_cpu = 42 + (48 if hot else 26) * heat + rng.normal(0, 0.25, n)
    capped = hot & (temp_cpu > 82)
    freq = np.where(capped, 1190.4, 1984.0)
    cols = {"t_s": np.round(t, 6), "sampler.lag_ms": np.abs(rng.normal(0.3, 0.2, n)), "sampler.missed": np.zeros(n)}
    util = np.clip(100 * load + rng.normal(3, 2, n), 0, 100)
    cols["cpu.util_pct"] = util
    for c in range(6):
        cols[f"cpu{c}.util_pct"] = np.clip(util + rng.normal(0, 4, n), 0, 100)
    cols["mem.used_mb"] = 2100 + 900 * (t > phases["load"][0] / NS) + rng.normal(0, 3, n)
    cols["mem.available_mb"] = 7620 - cols["mem.used_mb"]
    cols["proc.rss_mb"] = np.where(t > phases["load"][0] / NS, 880.0, 14.0) + rng.normal(0, 0.5, n)
    for c in range(6):
        cols[f"cpu{c}.freq_mhz"] = freq
        cols[f"cpu{c}.max_freq_mhz"] = np.full(n, 1984.0)
    cols["gpu.util_pct"] = np.clip(rng.normal(2, 1, n), 0, 100)
    cols["gpu.freq_mhz"] = np.full(n, 306.0)
    cols["emc.util_pct"] = np.clip(10 + 35 * load + rng.normal(0, 2, n), 0, 100)
    for i, zone in enumerate(ZONES):
        cols[f"temp.{zone}_c"] = temp_cpu - 0.6 * i + rng.normal(0, 0.2, n)
    cpu_w = 0.9 + 6.5 * load * np.where(capped, 0.7, 1.0) + rng.normal(0, 0.15, n)
    soc_w = 1.4 + 1.2 * load + rng.normal(0, 0.05, n)
    cols["power.vdd_cpu_gpu_cv_w"] = cpu_w
    cols["power.vdd_soc_w"] = soc_w
    cols["power.vdd_in_w"] = 2.1 + cpu_w + soc_w + rng.normal(0, 0.05, n)
    cols["power.total_w"] = cols["power.vdd_in_w"]
    frame = pd.DataFrame(cols)
    return frame.round({k: 3 for k in cols if k != "t_s"})


def write_case(run: RunDir, spec: dict, index: int, minutes: float, hz: float) -> tuple[str, dict]:
    rng = np.random.default_rng(index)
    case_id = f"{index:04d}{rng.integers(16**8):08x}"
    folder = run.case_dir(case_id)
    folder.mkdir(parents=True)
    model, size, speed = spec["model"]
    llama = spec["runtime"] == "llama_cpp"
    workload = {"prompt_tokens": spec["prompt"], "n_gen": 128} if llama else {"seed": 0}
    params = {"threads": spec["threads"], "n_ctx": 2048} if llama else {"intra_op_threads": spec["threads"]}
    label = f"{model} " + " ".join(f"{k}={v}" for k, v in {**workload, **params}.items() if k not in ("n_gen", "seed"))
    case = {
        "case_id": case_id, "label": label, "recipe": "scale", "device": spec["device"], "model": model,
        "runtime": spec["runtime"], "source": {"path": f"{model}.bin"}, "workload": workload, "params": params,
        "protocol": {"warmup": 1, "repetitions": 10, "min_duration_s": 60, "max_repetitions": 100000,
                     "cooldown_s": 15, "timeout_s": 1800.0},
        "telemetry": {"interval_ms": int(1000 / hz), "idle_s": 10}, "gate": None,
        "model_path": f"/home/melt/.melt/models/{model}", "model_sha256": "0" * 64, "model_size_bytes": int(size),
    }  # fmt: skip
    t0 = int(rng.integers(1000, 100000)) * NS
    phases = phases_ns(t0, minutes)
    slow = {"orin-nano-a": 1.0, "orin-nano-b": 0.97, "orin-nx": 1.5, "agx-orin": 2.2}[spec["device"]]
    scale = speed * slow * (1 + 0.25 * (spec["threads"] - 2) / 4)
    if llama:
        rows, windows = llama_trials(rng, phases, spec["prompt"], scale)
    else:
        rows, windows = onnx_trials(rng, phases, spec["model"][2] / scale)
    counted = [r for r in rows if not r["warmup"]]
    hot = spec["device"] == "orin-nano-b" and spec["threads"] >= 4
    agent = {
        "agent_protocol": 1, "status": "ok", "phases": phases,
        "load": {"load_s": (phases["load"][1] - phases["load"][0]) / NS, "effective_params": params},
        "t_load_start_ns": phases["load"][0], "t_load_end_ns": phases["load"][1],
        "peak_rss_mb": size / 1e6 * (1.15 if llama else 8) + 60, "rss_after_load_mb": size / 1e6 + 50,
        "protocol": {"warmup_trials": 1, "counted_trials": len(counted),
                     "stopped_because": "repetitions and min_duration_s met"},
    }  # fmt: skip
    write_json(folder / "case.json", case)
    write_json(folder / "agent.json", agent)
    with (folder / "trials.jsonl").open("w") as f:
        f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    trace(rng, t0, minutes, hz, phases, windows, hot).to_csv(folder / "trace.csv", index=False)
    write_json(folder / "sensors.json", {"power_method": "ina3221", "power_total": "power.total_w", "probes": {}})
    metrics = case_metrics(case, read_trials(folder / "trials.jsonl"), agent, read_trace(folder))
    write_json(folder / "metrics.json", metrics)
    entry = {"status": "ok", "label": label, "device": spec["device"], "model": model, "reason": None,
             "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:10:00+00:00"}  # fmt: skip
    return case_id, entry


def build_run(folder: Path, n_cases: int, minutes: float, hz: float) -> Path:
    run = RunDir(folder / "scale")
    specs = plan(n_cases)
    with ProcessPoolExecutor() as pool:  # melt's own analysis of each case: about a second each
        done = pool.map(write_case, [run] * len(specs), specs, range(len(specs)), [minutes] * len(specs),
                        [hz] * len(specs))  # fmt: skip
        cases = dict(done)
    env = {"model": "NVIDIA Jetson Orin Nano (synthetic)", "cpu_model": "ARMv8 Processor rev 1 (v8l)", "cpu_count": 6,
           "mem_total_mb": 7620, "os": "Ubuntu 22.04.4 LTS", "kernel": "5.15.136-tegra"}  # fmt: skip
    manifest = {
        "run_id": "scale", "status": "complete", "started_at": "2026-01-01T00:00:00+00:00",
        "ended_at": "2026-01-01T17:00:00+00:00", "resumed_at": [],
        "recipe": {"name": "scale", "path": "synthetic", "sha256": "0" * 64,
                   "resolved": {"name": "scale", "description": "synthetic: report_scale.py"}},
        "devices": {d: {"profile": {"name": d, "platform": "jetson", "transport": {"kind": "ssh"}},
                        "environment": env, "runtimes": {}, "sensors": {"power_method": "ina3221"}} for d in DEVICES},
        "host": {"melt": "benchmark", "environment": {}, "packages": {}}, "models": {}, "cases": cases,
    }  # fmt: skip
    run.write(manifest)
    run.write_summary(manifest)
    return run.path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--hz", type=float, default=10)
    ap.add_argument("--keep", type=Path, help="Write the synthetic run and its report here and keep them.")
    add_out_arg(ap)
    args = ap.parse_args()
    with kept_output("report_scale", args.out):
        return scale(args)


def scale(args) -> int:
    work = args.keep or Path(tempfile.mkdtemp(prefix="melt-report-scale-"))
    try:
        t = time.perf_counter()
        run_dir = build_run(work, args.cases, args.minutes, args.hz)
        built_s = time.perf_counter() - t
        raw_mb = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) / 1e6
        t = time.perf_counter()
        out = write_report([run_dir])
        report_s = time.perf_counter() - t
        size_mb = out.stat().st_size / 1e6
        samples = args.minutes * 60 * args.hz
        print(f"synthetic run: {args.cases} cases, {samples:.0f} trace samples each, {raw_mb:.0f} MB raw "
              f"(built in {built_s:.0f} s)")  # fmt: skip
        print(f"report: {report_s:.2f} s ({report_s / BUDGET_S:.0%} of the {BUDGET_S:.0f} s budget), "
              f"{size_mb:.2f} MB ({size_mb / BUDGET_MB:.0%} of the {BUDGET_MB:.0f} MB budget)")  # fmt: skip
        print(f"file: {out}" if args.keep else "(the synthetic run is deleted; --keep DIR keeps it and the report)")
        ok = report_s < BUDGET_S and size_mb < BUDGET_MB
        print("within budget" if ok else "OVER BUDGET")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
