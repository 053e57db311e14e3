"""Start a process and wait for it without polling: a pidfd where the kernel has one."""

from __future__ import annotations

import os
import select
import signal
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None when killed at the deadline
    timed_out: bool


def wait(proc: subprocess.Popen, timeout_s: float) -> Finished:
    """Block until proc exits or the deadline passes (then kill its process group)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        if pidfd is not None:
            ready, _, _ = select.select([pidfd], [], [], timeout_s)
            if ready:
                return Finished(proc.wait(), False)
        else:
            try:
                return Finished(proc.wait(timeout=timeout_s), False)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc)
        return Finished(None, True)
    except BaseException:  # Ctrl-C on the host: the agent must not outlive it
        _kill_group(proc)
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
