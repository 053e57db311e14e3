"""Commands started on a device in their own session, so melt can end the whole tree later.

`spawn` runs SPAWN on the device through the transport's client (ssh, adb shell, a local sh): it starts
the command under `setsid` (where there is none: in a job-control process group, or in the spawning
shell's own group where the shell refuses job control without a tty, as dash and busybox sh do), with stdin from
/dev/null and its output in a file, records `PGID START` in STATE/pid (START: field 22 of
/proc/PGID/stat, the process's start time in clock ticks since boot, so a reused pid is not taken for
ours), waits for it and writes its exit status to STATE/exit. The command does not depend on the
client: a cut link or a killed client leaves it running, and what ends it is REAP, run through a second
connection, which kills the process group (SIGKILL), confirms nothing of it is left (`kill -0 -PGID`
fails) and removes STATE. Where the link is down that second connection fails, and the state folder
stays: `leftovers()` finds it at the next connection, before any new case starts.

The scripts are POSIX sh and use only kill, sed, cut, sleep, setsid, mkdir, rm, mv, cat, tr, printf (coreutils,
busybox and toybox all have them); tests/test_spawning.py runs them under dash, mksh, busybox sh and bash, with
and without setsid.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from dataclasses import dataclass

from melt.devices import process

# $1 state folder; "$@" after shift: the command
SPAWN = r"""d=$1; shift
mkdir -p "$d" && rm -f "$d/exit" "$d/pid" || exit 96
if command -v setsid >/dev/null 2>&1; then
  setsid "$@" </dev/null >"$d/output" 2>&1 &
  c=$!; p=$c
else
  # job control gives the command a process group of its own, but dash and busybox sh refuse it without
  # a tty and leave it in this shell's group: then that is the group to end (sshd, adbd and a local
  # client each start this shell in a session of its own, so the group holds nothing else)
  set -m 2>/dev/null; "$@" </dev/null >"$d/output" 2>&1 &
  c=$!
  p=$(sed 's/^.*) //' "/proc/$c/stat" 2>/dev/null | cut -d' ' -f3)
  [ -n "$p" ] || p=$c
fi
s=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f20)
printf '%s %s\n' "$p" "$s" > "$d/pid.part" && mv "$d/pid.part" "$d/pid"
wait "$c"; rc=$?
printf '%s\n' "$rc" > "$d/exit.part" && mv "$d/exit.part" "$d/exit"
exit "$rc"
"""

# $1 state folder. Prints `exit RC` when the command ended by itself, `killed` when something of its process
# group was still there and got SIGKILL, then `gone` (nothing of the group is left; the folder is removed)
# or `alive PGID` (SIGKILL did not end it within 5 s).
_KILL_FN = r"""reap() {
  d=$1
  i=0
  # SPAWN writes pid right after starting the command: a reap that comes first waits for it briefly
  while [ ! -f "$d/pid" ] && [ ! -f "$d/exit" ] && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i+1)); done
  [ -f "$d/exit" ] && printf 'exit %s\n' "$(cat "$d/exit")"
  if [ -f "$d/pid" ]; then
    read -r p s < "$d/pid"
    now=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f20)
    # the leader is ours when its start time matches; a group whose leader is gone keeps its pgid
    # reserved (the kernel does not reuse a pid that is still a process group id)
    if [ -z "$now" ] || [ -z "$s" ] || [ "$now" = "$s" ]; then
      kill -0 -"$p" 2>/dev/null && printf 'killed\n'
      kill -KILL -"$p" 2>/dev/null
      # the leader too: a reap that comes before setsid() took effect finds no group yet
      [ -n "$now" ] && kill -KILL "$p" 2>/dev/null
      i=0
      while kill -0 -"$p" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done
      if kill -0 -"$p" 2>/dev/null; then printf 'alive %s\n' "$p"; return 1; fi
    fi
  fi
  rm -rf "$d"
  printf 'gone\n'
}
"""
REAP = _KILL_FN + 'reap "$1"\n'

# $1 folder holding state folders. One line per state folder: NAME<TAB>what reap printed (space-joined).
LEFTOVERS = (
    _KILL_FN
    + r"""for d in "$1"/*; do
  [ -d "$d" ] || continue
  printf '%s\t%s\n' "${d##*/}" "$(reap "$d" | tr '\n' ' ')"
done
"""
)


@dataclass(frozen=True)
class Reaped:
    """What REAP found: the command's own exit status (None if it had not ended by itself), whether
    its process group is confirmed gone (None: the device could not be asked), and whether anything of it was
    still running and had to be killed."""

    returncode: int | None
    gone: bool | None
    detail: str = ""
    killed: bool = False


def parse_reap(text: str) -> Reaped:
    """REAP's words: `exit RC`, then `gone` or `alive PGID` (as lines, or joined by spaces as LEFTOVERS
    prints them), `killed` where it ended something. Without `gone` or `alive`: not confirmed."""
    rc, gone, killed = None, None, False
    words = text.split()
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word == "exit" and nxt.lstrip("-").isdigit():
            rc = int(nxt)
        elif word == "gone":
            gone = True
        elif word == "alive":
            gone = False
        elif word == "killed":
            killed = True
    return Reaped(rc, gone, text.strip(), killed)


def parse_leftovers(text: str) -> dict[str, Reaped]:
    """LEFTOVERS' output: {state folder name: what reap found there}."""
    found = {}
    for line in text.splitlines():
        name, _, said = line.partition("\t")
        if name:
            found[name] = parse_reap(said)
    return found


@dataclass(frozen=True)
class Ended:
    """How a spawned command ended.

    returncode: its exit status (None when it did not end by itself); timed_out: killed at the deadline;
    lost: why the connection died before it ended (None when it did not); gone: its process group is
    confirmed gone on the device (False: still there; None: the device could not be asked)."""

    returncode: int | None
    timed_out: bool
    lost: str | None
    gone: bool | None


# every Spawned melt is waiting on, so Ctrl-C (which reaches only the main thread) can end them all
_live: set[Spawned] = set()
_live_lock = threading.Lock()


class Spawned:
    """A command running on the device in its own session. wait(timeout_s) -> Ended; kill() -> Reaped."""

    def __init__(self, transport, client: subprocess.Popen, state: str, err_file):
        self.transport = transport
        self.client = client
        self.state = state
        self._err = err_file
        self._reaped: Reaped | None = None
        self._lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    def _client_stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")[-2000:]

    def kill(self, timeout_s: float = 10.0) -> Reaped:
        """End the command's whole process group on the device through a second connection and confirm
        it is gone (once: a later call returns the same answer)."""
        with self._lock:
            if self._reaped is None or self._reaped.gone is None:
                try:
                    done = self.transport.run(["sh", "-c", REAP, "sh", self.state], timeout_s)
                except Exception as e:  # noqa: BLE001 - TransportError and the like: not confirmed, say why
                    self._reaped = Reaped(None, None, str(e))
                else:
                    reaped = parse_reap(done.stdout)
                    if done.timed_out or reaped.gone is None:
                        why = "no answer" if done.timed_out else (done.stderr.strip() or done.stdout.strip())
                        reaped = Reaped(reaped.returncode, None, f"clean-up not confirmed: {why[-300:]}")
                    self._reaped = reaped
            return self._reaped

    def wait(self, timeout_s: float, cleanup_s: float = 10.0) -> Ended:
        """Wait up to timeout_s for the command; then (or when the client died first) end what is left of
        its tree through a second connection. Never longer than timeout_s + cleanup_s (+ the client's exit).
        Whether the command ended by itself is read from the device (STATE/exit), not from the client's
        exit status, which a dead link or a killed client would fake."""
        try:
            finished = process.wait(self.client, timeout_s)
            reaped = self.kill(cleanup_s)
            if finished.timed_out:
                return Ended(None, True, None, reaped.gone)
            if reaped.returncode is not None:
                return Ended(reaped.returncode, False, None, reaped.gone)
            said = self._client_stderr().strip().splitlines()
            lost = f"the connection to the device ended before the command did ({said[-1] if said else 'no message'})"
            if reaped.gone is None:
                lost += f"; the device did not answer the clean-up ({reaped.detail[-200:]})"
            return Ended(None, False, lost, reaped.gone)
        except BaseException:
            self.kill(cleanup_s)  # Ctrl-C on the host: nothing of the case may outlive it
            raise
        finally:
            with _live_lock:
                _live.discard(self)
            self._err.close()


def spawn(transport, client_argv: list[str], state: str) -> Spawned:
    """Start the client (which runs SPAWN on the device) locally in its own session."""
    err = tempfile.TemporaryFile(prefix="melt-spawn-")  # noqa: SIM115 - closed by Spawned.wait
    client = subprocess.Popen(
        client_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
    )
    return Spawned(transport, client, state, err)


def spawn_argv(state: str, argv: list[str]) -> list[str]:
    """The device-side command line that runs argv under SPAWN."""
    return ["sh", "-c", SPAWN, "sh", state, *argv]


def kill_all(timeout_s: float = 10.0) -> list[Reaped]:
    """Ctrl-C: end every spawned command's tree on its device (in parallel, each over a second
    connection). The local clients are process.kill_all()'s."""
    with _live_lock:
        live = list(_live)
    results: list[Reaped] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.kill(timeout_s)), daemon=True) for s in live]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s + 5)
    return results
