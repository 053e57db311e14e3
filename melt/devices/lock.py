"""One melt run at a time on a device: a lock file in the device's workdir.

The file holds one line, `run_id<TAB>host<TAB>pid<TAB>started<TAB>since` (pid: the melt process on
`host`; started: that process's start time, so a reused pid is not taken for it; since: ISO time). It is
created with the shell's noclobber (`set -C`: O_EXCL), so two melts cannot both create it. A lock whose
melt ran on this host and is gone is stale: it is taken over (under a guard file created the same way, and only
while it still names that melt, so two melts taking it over at once do not both get it), and the note says whose
it was. A lock held from another host cannot be checked from here; melt names its holder and refuses.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

import psutil

from melt.errors import MeltError

# $1 lock, $2 our line. `acquired`; `held` and the lock's content; `failed` and why it could not be created. A
# lock created but not written (a full disk) is removed, not left empty to block every later run.
ACQUIRE = r"""if err=$( (set -C; exec 3>"$1" || exit 2; printf '%s\n' "$2" >&3 || { rm -f "$1"; exit 3; }) 2>&1 ); then
  echo acquired
elif [ -e "$1" ]; then
  i=0  # a melt that has just created it may not have written it yet
  while [ ! -s "$1" ] && [ "$i" -lt 10 ]; do sleep 0.1; i=$((i+1)); done
  echo held; cat "$1"
else
  echo failed; printf '%s\n' "$err"
fi"""
# $1 lock, $2 our line, $3 the stale content as read. Replaces the lock only while it still holds that content,
# under $1.takeover (created O_EXCL), so of two melts taking over the same stale lock only one gets it. `acquired`,
# else `held` (another melt took it first), or `guard` (a takeover guard left by a melt that stopped mid-way).
TAKE_OVER = r"""i=0
until (set -C; : > "$1.takeover") 2>/dev/null; do
  i=$((i+1)); [ "$i" -le 20 ] || { echo guard; exit 0; }
  sleep 0.1
done
r=held
if [ "$(cat "$1" 2>/dev/null)" = "$3" ]; then printf '%s\n' "$2" > "$1.part" && mv "$1.part" "$1" && r=acquired; fi
rm -f "$1.takeover"
echo "$r"
"""
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


def acquire(sh, path: str, device: str, holder: Holder, _tries: int = 2) -> str | None:
    """Take the device's lock for `holder`. sh(script, *args) runs a POSIX sh script on the device. Returns a
    note when a stale lock was taken over, else None. Raises DeviceBusy naming the holder, or saying why the
    lock could not be created."""
    done = sh(ACQUIRE, path, holder.line())
    words = done.stdout.split("\n", 1)
    said = words[1] if len(words) > 1 else ""
    if words[0].strip() == "acquired":
        return None
    if words[0].strip() != "held":
        why = said.strip() if words[0].strip() == "failed" else done.stderr.strip()
        raise DeviceBusy(f"device {device}: could not create the lock {path}: {why[-200:]}")
    other = Holder.parse(said)
    if other is None:
        raise DeviceBusy(
            f"device {device}: the lock {path} holds something melt cannot read ({said.strip()!r}); "
            "if no melt runs there, remove it"
        )
    alive = other.alive_here()
    if alive is False:
        took = sh(TAKE_OVER, path, holder.line(), said.rstrip("\n")).stdout.strip()
        if took == "acquired":
            return f"took over the lock of {other.describe()}, which is no longer running"
        if took == "guard":
            raise DeviceBusy(
                f"device {device}: {path}.takeover is left by a melt that stopped while taking over the lock of "
                f"{other.describe()}; if no melt runs there, remove it"
            )
        if _tries > 1:  # another melt took it over first: whose is it now?
            return acquire(sh, path, device, holder, _tries - 1)
        raise DeviceBusy(f"device {device}: the lock {path} changed while melt was taking it over; try again")
    where = "still running" if alive else "on another host, so melt cannot tell whether it still runs"
    raise DeviceBusy(
        f"device {device} is in use by {other.describe()}, {where}; wait for it to end"
        + ("" if alive else f", or remove {path} if it is gone")
    )


def release(sh, path: str, holder: Holder) -> None:
    """Remove the lock if it is still ours."""
    sh(RELEASE, path, holder.line())
