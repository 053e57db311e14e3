"""One melt run at a time on a device: a lock file in the device's workdir.

The file holds one line, `run_id<TAB>host<TAB>pid<TAB>started<TAB>since` (pid: the melt process on
`host`; started: that process's start time, so a reused pid is not taken for it; since: ISO time). It is
created with the shell's noclobber (`set -C`: O_EXCL), so two melts cannot both create it. A lock whose
melt ran on this host and is gone is stale: it is taken over, and the note says whose it was. A lock
held from another host cannot be checked from here; melt names its holder and refuses.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

import psutil

from melt.errors import MeltError

ACQUIRE = r"""if (set -C; printf '%s\n' "$2" > "$1") 2>/dev/null; then echo acquired; else echo held; cat "$1"; fi"""
TAKE_OVER = r"""printf '%s\n' "$2" > "$1.part" && mv "$1.part" "$1" && echo acquired"""
RELEASE = r"""[ "$(cat "$1" 2>/dev/null)" = "$2" ] && rm -f "$1"; true"""


class DeviceBusy(MeltError):
    """Another melt run holds the device."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    host: str
    pid: int
    started: float
    since: str

    def line(self) -> str:
        return "\t".join([self.run_id, self.host, str(self.pid), f"{self.started:.2f}", self.since])

    @classmethod
    def parse(cls, line: str) -> Holder | None:
        parts = line.strip().split("\t")
        if len(parts) != 5 or not parts[2].isdigit():
            return None
        try:
            return cls(parts[0], parts[1], int(parts[2]), float(parts[3]), parts[4])
        except ValueError:
            return None

    def alive_here(self) -> bool | None:
        """Whether this holder's melt still runs (None: it ran on another host, so melt cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def describe(self) -> str:
        return f"melt run {self.run_id} (host {self.host}, pid {self.pid}, since {self.since})"


def me(run_id: str) -> Holder:
    pid = os.getpid()
    return Holder(
        run_id, socket.gethostname(), pid, psutil.Process(pid).create_time(),
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip


def acquire(sh, path: str, device: str, holder: Holder) -> str | None:
    """Take the device's lock for `holder`. sh(script, *args) runs a POSIX sh script on the device. Returns a
    note when a stale lock was taken over, else None. Raises DeviceBusy naming the holder."""
    done = sh(ACQUIRE, path, holder.line())
    words = done.stdout.split("\n", 1)
    if words[0].strip() == "acquired":
        return None
    if words[0].strip() != "held":
        raise DeviceBusy(f"device {device}: could not create the lock {path}: {done.stderr.strip()[-200:]}")
    other = Holder.parse(words[1] if len(words) > 1 else "")
    if other is None:
        raise DeviceBusy(
            f"device {device}: the lock {path} holds something melt cannot read ({(words[1:] or [''])[0].strip()!r}); "
            "if no melt runs there, remove it"
        )
    alive = other.alive_here()
    if alive is False:
        sh(TAKE_OVER, path, holder.line())
        return f"took over the lock of {other.describe()}, which is no longer running"
    where = "still running" if alive else "on another host, so melt cannot tell whether it still runs"
    raise DeviceBusy(
        f"device {device} is in use by {other.describe()}, {where}; wait for it to end"
        + ("" if alive else f", or remove {path} if it is gone")
    )


def release(sh, path: str, holder: Holder) -> None:
    """Remove the lock if it is still ours."""
    sh(RELEASE, path, holder.line())
