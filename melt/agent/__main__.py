"""Agent entry point: `python -m melt.agent run CASE_DIR` or `python -m melt.agent env [RUNTIME...]`.

run: reads CASE_DIR/case.json, loads the model, runs the protocol, and writes
CASE_DIR/trials.jsonl (one line per trial) and CASE_DIR/agent.json (load figures, memory,
runtime versions, environment, and the error if any). Exit 0 on success, 3 on a case error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback

from melt.agent import envinfo, memory
from melt.agent.protocol import run_trials

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


def cmd_env(runtimes: list[str], root: str) -> int:
    env = {"agent_protocol": AGENT_PROTOCOL_VERSION, "environment": envinfo.collect(root)}
    env["runtimes"] = {name: runtime_info(name) for name in runtimes}
    json.dump(env, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


def cmd_run(case_dir: str) -> int:
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    result: dict = {"agent_protocol": AGENT_PROTOCOL_VERSION, "pid": os.getpid(), "status": "running"}
    result["environment"] = envinfo.collect(case.get("sensors_root", "/"))
    agent_json = os.path.join(case_dir, "agent.json")
    runner = None
    try:
        module = _runtime(case["runtime"])
        result["runtime"] = module.info()
        runner = module.Runner(case, case_dir)
        result["t_load_start_ns"] = time.monotonic_ns()
        result["load"] = runner.load()
        result["t_load_end_ns"] = time.monotonic_ns()
        result["rss_after_load_mb"] = memory.rss_mb()
        result["peak_rss_after_load_mb"] = memory.peak_rss_mb()
        with open(os.path.join(case_dir, "trials.jsonl"), "w") as out:
            result["protocol"] = run_trials(runner, case["protocol"], out)
        result["status"] = "ok"
    except Exception as e:  # the case fails; the reason goes to the host, not to a bare traceback
        result["status"] = "failed"
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    finally:
        result["peak_rss_mb"] = memory.peak_rss_mb()
        result["rss_end_mb"] = memory.rss_mb()
        if runner is not None:
            try:
                result["runtime_counters"] = runner.close()
            except Exception as e:
                result["close_error"] = f"{type(e).__name__}: {e}"
        _write_json(agent_json, result)
    if result["status"] != "ok":
        sys.stderr.write(result["error"] + "\n")
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="melt-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one case")
    run.add_argument("case_dir")
    env = sub.add_parser("env", help="print facts about this device as JSON")
    env.add_argument("runtimes", nargs="*", default=sorted(RUNTIME_MODULES))
    env.add_argument("--root", default="/")
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args.case_dir)
    return cmd_env(args.runtimes, args.root)


if __name__ == "__main__":
    sys.exit(main())
