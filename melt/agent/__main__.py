"""Agent entry point: `python -m melt.agent run CASE_DIR | sample CASE_DIR | env [RUNTIME...] | bandwidth`.

run: reads CASE_DIR/case.json; waits at the thermal gate; starts the sampler (trace.csv,
sensors.json) and holds an idle window; loads the model, times melt.agent.reference_loop, runs the protocol,
times the loop again, cools down; writes
CASE_DIR/trials.jsonl (one line per trial) and CASE_DIR/agent.json (phases on the monotonic clock,
load figures, memory, runtime versions, environment, the error if any). Exit 0 ok, 3 case error.
sample: the sampler process itself. env: machine facts, runtimes, sensors, as JSON. bandwidth: the memory
bandwidth measured here (melt.agent.bandwidth), as JSON.
Both `run` and `env` record the variables they started with (melt.agent.environment: speed-relevant ones
with their values, the names melt withheld) and `env` the CPU's ISA beside llama.cpp's build (melt.agent.isa).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback

from melt.agent import envinfo, environment, isa, memory, reference_loop
from melt.agent.protocol import run_trials
from melt.agent.telemetry import SamplerProcess, wait_for_temperature

RUNTIME_MODULES = {"llama_cpp": "melt.runtimes.llama_cpp", "onnxruntime": "melt.runtimes.onnxruntime"}
AGENT_PROTOCOL_VERSION = 1


def _runtime(name: str):
    if name not in RUNTIME_MODULES:
        raise ValueError(f"unknown runtime {name!r}; this agent knows {sorted(RUNTIME_MODULES)}")
    return importlib.import_module(RUNTIME_MODULES[name])


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


def runtime_info(name: str) -> dict:
    """Versions of a runtime, or why it cannot be imported here (the fix is to install it)."""
    try:
        return {"available": True, **_runtime(name).info()}
    except ImportError as e:
        return {"available": False, "error": f"{type(e).__name__}: {e}"}


def _own_environment() -> dict:
    """What melt started this agent with (environment.record), melt's channel then dropped from os.environ so
    the runtime and the sampler see only the variables recorded."""
    found = environment.record(os.environ)
    for name in (environment.PASSED_VAR, environment.WITHHELD_VAR):
        os.environ.pop(name, None)
    return found


def cmd_env(runtimes: list[str], root: str, sensors: dict) -> int:
    from melt.telemetry.sampler import detect_all

    env = {"agent_protocol": AGENT_PROTOCOL_VERSION, "environment": {**envinfo.collect(root), **_own_environment()}}
    env["runtimes"] = {name: runtime_info(name) for name in runtimes}
    llama = env["runtimes"].get("llama_cpp") or {}
    env["environment"]["isa"] = isa.summary(envinfo.cpuinfo(root), llama.get("system_info"))
    if not llama.get("system_info"):
        env["environment"]["isa"]["build_unknown"] = "llama_cpp was not asked for or does not import here"
    env["sensors"] = detect_all(root, sensors)
    json.dump(env, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def _phase(phases: dict, name: str, start_ns: int) -> None:
    phases[name] = [start_ns, time.monotonic_ns()]


def cmd_run(case_dir: str) -> int:
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    root = case.get("sensors_root", "/")
    telemetry = case.get("telemetry") or {}
    result: dict = {"agent_protocol": AGENT_PROTOCOL_VERSION, "pid": os.getpid(), "status": "running"}
    result["environment"] = {**envinfo.collect(root), **_own_environment()}
    phases: dict = {}
    result["phases"] = phases  # [start_ns, end_ns] on the monotonic clock, as are the trials' stamps
    agent_json = os.path.join(case_dir, "agent.json")
    runner = sampler = None
    try:
        if case.get("gate"):
            t = time.monotonic_ns()
            result["gate"] = wait_for_temperature(root, case["gate"]["max_temp_c"], case["gate"]["timeout_s"])
            _phase(phases, "gate", t)
        if telemetry.get("interval_ms", 0) > 0:
            sampler = SamplerProcess(case_dir, telemetry["interval_ms"], root, case.get("sensors", {}), os.getpid())
            t = time.monotonic_ns()
            time.sleep(telemetry.get("idle_s", 0))  # the idle baseline: nothing of ours runs
            _phase(phases, "idle", t)
        module = _runtime(case["runtime"])
        result["runtime"] = module.info()
        runner = module.Runner(case, case_dir)
        result["t_load_start_ns"] = time.monotonic_ns()
        result["load"] = runner.load()
        result["t_load_end_ns"] = time.monotonic_ns()
        phases["load"] = [result["t_load_start_ns"], result["t_load_end_ns"]]
        result["rss_after_load_mb"] = memory.rss_mb()
        result["peak_rss_after_load_mb"] = memory.peak_rss_mb()
        loop = telemetry.get("reference_loop", True)
        if loop:  # the machine's own speed right before and after the trials (melt.agent.reference_loop)
            t = time.monotonic_ns()
            before = reference_loop.measure()
            _phase(phases, "reference_before", t)
        t = time.monotonic_ns()
        with open(os.path.join(case_dir, "trials.jsonl"), "w") as out:
            result["protocol"] = run_trials(runner, case["protocol"], out)
        _phase(phases, "trials", t)
        if loop:
            t = time.monotonic_ns()
            after = reference_loop.measure()
            _phase(phases, "reference_after", t)
            result["reference_loop"] = {"before": before, "after": after, **reference_loop.summary(before, after)}
        if case.get("quality") and hasattr(runner, "quality"):  # after the speed trials, same model and params
            # the peak of the speed trials, before the quality step's own contexts and logits raise it
            result["peak_rss_mb"] = memory.peak_rss_mb()
            t = time.monotonic_ns()
            result["quality"] = runner.quality(case["quality"])
            _phase(phases, "quality", t)
            result["peak_rss_quality_mb"] = memory.peak_rss_mb()
        if case["protocol"].get("cooldown_s"):
            t = time.monotonic_ns()
            time.sleep(case["protocol"]["cooldown_s"])  # cool-down, inside the trace
            _phase(phases, "cooldown", t)
        result["status"] = "ok"
    except Exception as e:  # the case fails; the reason goes to the host, not to a bare traceback
        result["status"] = "failed"
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    finally:
        result.setdefault("peak_rss_mb", memory.peak_rss_mb())
        result["rss_end_mb"] = memory.rss_mb()
        if runner is not None:
            try:
                result["runtime_counters"] = runner.close()
            except Exception as e:
                result["close_error"] = f"{type(e).__name__}: {e}"
        if sampler is not None:
            result["sampler_exit"] = sampler.stop()
        _write_json(agent_json, result)
    if result["status"] != "ok":
        sys.stderr.write(result["error"] + "\n")
        return 3
    return 0


def cmd_sample(args) -> int:
    from melt.telemetry import sampler

    sampler.run(args.case_dir, args.interval_ms, args.root, json.loads(args.sensors), args.pid)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="melt-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one case")
    run.add_argument("case_dir")
    sample = sub.add_parser("sample", help="sample sensors into CASE_DIR/trace.csv until SIGTERM")
    sample.add_argument("case_dir")
    sample.add_argument("--interval-ms", type=int, default=100)
    sample.add_argument("--root", default="/")
    sample.add_argument("--pid", type=int)
    sample.add_argument("--sensors", default="{}", help="the profile's sensors settings, as JSON")
    env = sub.add_parser("env", help="print facts about this device as JSON")
    env.add_argument("runtimes", nargs="*", default=sorted(RUNTIME_MODULES))
    env.add_argument("--root", default="/")
    env.add_argument("--sensors", default="{}", help="the profile's sensors settings, as JSON")
    sub.add_parser("bandwidth", help="measure memory read and copy bandwidth here; print JSON")
    args = parser.parse_args(argv)
    if args.command == "bandwidth":
        from melt.agent import bandwidth

        # the real machine's caches and memory (root "/"), never a recorded sensor tree: this is physics
        json.dump(bandwidth.probe("/"), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.command == "run":
        return cmd_run(args.case_dir)
    if args.command == "sample":
        return cmd_sample(args)
    return cmd_env(args.runtimes, args.root, json.loads(args.sensors))


if __name__ == "__main__":
    sys.exit(main())
