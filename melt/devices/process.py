"""Start a process and wait for it without polling: a pidfd where the kernel has one."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass

# Every child melt is waiting on, so an interrupted run (several device workers in threads) can
# stop them all at once: a signal reaches only the main thread.
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


@contextmanager
def tracked(proc: subprocess.Popen):
    with _live_lock:
        _live.add(proc)
    try:
        yield proc
    finally:
        with _live_lock:
            _live.discard(proc)


def kill_all() -> int:
    """Kill every child melt is waiting on (its whole group where it leads one); how many."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        if proc.poll() is None:
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
    return len(procs)


def run_captured(cmd: list[str], timeout_s: float, input_bytes: bytes | None = None) -> tuple[int | None, bytes, bytes]:
    """subprocess.run with capture and a deadline, killable by kill_all(); returncode None at the deadline."""
    with subprocess.Popen(
        cmd, stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc, tracked(proc):  # fmt: skip
        try:
            out, err = proc.communicate(input_bytes, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, out or b"", err or b""
        except BaseException:
            proc.kill()
            raise
        return proc.returncode, out, err


@dataclass(frozen=True)
class Finished:
    returncode: int | None  # None when killed at the deadline
    timed_out: bool


def wait(proc: subprocess.Popen, timeout_s: float) -> Finished:
    """Block until proc exits or the deadline passes (then kill its process group)."""
    with tracked(proc):
        return _wait(proc, timeout_s)


def _wait(proc: subprocess.Popen, timeout_s: float) -> Finished:
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
