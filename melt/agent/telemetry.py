"""The agent's side of telemetry: start the sampler process, gate on temperature, stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from melt.telemetry.thermal import ThermalProbe

READY_TIMEOUT_S = 15.0
GATE_POLL_S = 1.0


def agent_command() -> list[str]:
    """How to start this agent again: the zipapp it runs from on a device, else the package."""
    import melt

    where = os.path.abspath(melt.__file__)
    if ".pyz" + os.sep in where:
        return [sys.executable, where.split(".pyz" + os.sep)[0] + ".pyz"]
    return [sys.executable, "-m", "melt.agent"]


class SamplerProcess:
    """The sampler in its own process, so sampling never shares the measured process's GIL."""

    def __init__(self, case_dir: str, interval_ms: int, root: str, sensors: dict, pid: int):
        cmd = [
            *agent_command(), "sample", case_dir,
            "--interval-ms", str(interval_ms), "--root", root, "--pid", str(pid), "--sensors", json.dumps(sensors),
        ]  # fmt: skip
        self.trace = os.path.join(case_dir, "trace.csv")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _has_first_row(self.trace):  # ready once it has written a row
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sampler exited with {self.proc.returncode} before its first sample")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sampler took more than {READY_TIMEOUT_S} s to start")
            time.sleep(0.01)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _has_first_row(path: str) -> bool:
    try:
        with open(path) as f:
            return len(f.read(1 << 16).splitlines()) >= 2
    except OSError:
        return False


def wait_for_temperature(root: str, max_temp_c: float, timeout_s: float) -> dict:
    """Block until the hottest thermal zone is below max_temp_c (or the deadline passes)."""
    probe = ThermalProbe(root)
    detection = probe.detect()
    if not detection.channels:
        return {"max_temp_c": max_temp_c, "skipped": "no thermal zones to read: " + "; ".join(detection.missing)}
    start = time.monotonic()
    deadline = start + timeout_s
    first = None
    while True:
        hottest = max(probe.sample().values(), default=None)
        first = hottest if first is None else first
        if hottest is not None and hottest < max_temp_c:
            return {"max_temp_c": max_temp_c, "start_temp_c": first, "temp_c": hottest,
                    "waited_s": time.monotonic() - start, "timed_out": False}  # fmt: skip
        if time.monotonic() >= deadline:
            return {"max_temp_c": max_temp_c, "start_temp_c": first, "temp_c": hottest,
                    "waited_s": time.monotonic() - start, "timed_out": True}  # fmt: skip
        time.sleep(min(GATE_POLL_S, max(0.0, deadline - time.monotonic())))
