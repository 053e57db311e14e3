"""melt.devices.lock: one melt run at a time on a device, the lock file written by a real sh (through the local
transport) as on any device; holders are real processes of this host."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from melt.devices import lock
from melt.devices.lock import DeviceBusy, Holder
from melt.devices.transport import LocalTransport

ROOT = Path(__file__).resolve().parents[1]
SHELLS = {"dash": ["dash"], "mksh": ["mksh"], "busybox sh": ["busybox", "sh"], "bash": ["bash"]}


@pytest.fixture(params=SHELLS)
def shell(request) -> list[str]:
    """The device's sh: the lock's scripts run under each shell a device may have."""
    return SHELLS[request.param]


@pytest.fixture
def sh(shell):
    """sh(script, *args) as Device.sh runs it: through the local transport, the arguments as $1.."""
    return lambda script, *args: LocalTransport().run([*shell, "-c", script, "sh", *args], 30)


def holder_of(proc: subprocess.Popen | psutil.Process, run_id: str, host: str | None = None, started=None) -> Holder:
    p = psutil.Process(proc.pid)
    return Holder(run_id, host or socket.gethostname(), p.pid, p.create_time() if started is None else started, "now")


@pytest.fixture
def other_melt():
    """A live process of this host standing for another melt run."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def path(tmp_path) -> str:
    """The lock file's path in a device's workdir (with a space in it, as any path may have)."""
    folder = tmp_path / "device work dir"
    folder.mkdir()
    return str(folder / "lock")


def test_a_free_device_is_taken(sh, path):
    me = lock.me("run-a")
    assert me.pid > 0 and me.host == socket.gethostname() and me.alive_here() is True
    assert lock.acquire(sh, path, "lab", me) is None
    assert Path(path).read_text() == me.line() + "\n"
    assert Holder.parse(Path(path).read_text()) == me


def test_a_live_holder_keeps_it(sh, path, other_melt):
    first = holder_of(other_melt, "run-first")
    assert lock.acquire(sh, path, "lab", first) is None
    with pytest.raises(DeviceBusy) as busy:
        lock.acquire(sh, path, "lab", lock.me("run-second"))
    said = str(busy.value)
    assert "device lab is in use by melt run run-first" in said
    assert f"host {socket.gethostname()}" in said and f"pid {other_melt.pid}" in said and "still running" in said
    assert Path(path).read_text() == first.line() + "\n", "a refused run leaves the lock as it was"


def test_a_holder_that_is_gone_is_taken_over_with_a_note(sh, path):
    gone = subprocess.Popen(["true"])
    stale = holder_of(gone, "run-crashed")
    gone.wait()
    assert stale.alive_here() is False
    assert lock.acquire(sh, path, "lab", stale) is None
    me = lock.me("run-new")
    note = lock.acquire(sh, path, "lab", me)
    assert note and "run-crashed" in note and f"pid {stale.pid}" in note and "no longer running" in note
    assert Path(path).read_text() == me.line() + "\n"


def test_a_reused_pid_is_not_the_holder(sh, path, other_melt):
    """The holder's pid now names another process (its start time differs): the lock is stale."""
    real = psutil.Process(other_melt.pid).create_time()
    stale = holder_of(other_melt, "run-crashed", started=real - 3600)
    assert stale.alive_here() is False
    lock.acquire(sh, path, "lab", stale)
    note = lock.acquire(sh, path, "lab", lock.me("run-new"))
    assert note and "run-crashed" in note
    assert other_melt.poll() is None


def test_a_holder_on_another_host_cannot_be_checked(sh, path, other_melt):
    far = holder_of(other_melt, "run-far", host="build-box-7")
    assert far.alive_here() is None
    lock.acquire(sh, path, "lab", far)
    with pytest.raises(DeviceBusy) as busy:
        lock.acquire(sh, path, "lab", lock.me("run-here"))
    said = str(busy.value)
    assert "melt run run-far (host build-box-7" in said and "cannot tell whether it still runs" in said
    assert f"remove {path}" in said
    assert Path(path).read_text() == far.line() + "\n"


@pytest.mark.parametrize(
    "content",
    ["", "garbage\n", "run\thost\tnot-a-pid\t1.0\tsince\n", "run\thost\t12\tnot-a-time\tsince\n", "a\tb\t1\n"],
)
def test_a_lock_melt_cannot_read_is_not_taken(sh, path, content):
    Path(path).write_text(content)
    with pytest.raises(DeviceBusy, match="holds something melt cannot read") as busy:
        lock.acquire(sh, path, "lab", lock.me("run-new"))
    assert "if no melt runs there, remove it" in str(busy.value)
    assert Path(path).read_text() == content


def test_a_lock_that_cannot_be_created_says_why(sh, tmp_path):
    missing = tmp_path / "no such folder" / "lock"
    with pytest.raises(DeviceBusy, match="could not create the lock") as busy:
        lock.acquire(sh, str(missing), "lab", lock.me("run-new"))
    assert "No such file or directory" in str(busy.value) or "nonexistent" in str(busy.value), str(busy.value)
    assert "cannot read" not in str(busy.value) and not missing.exists()


@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs with no byte left: a file can be created there, not written."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "full", str(mnt)]).returncode != 0:
        pytest.fail("cannot mount a tmpfs here (the lab runs as root)")
    subprocess.run(["dd", "if=/dev/zero", f"of={mnt / 'filler'}", "bs=4k"], capture_output=True)
    yield mnt
    subprocess.run(["umount", str(mnt)])


def test_a_full_disk_leaves_no_empty_lock_behind(sh, full_disk):
    path = full_disk / "lock"
    for _ in range(2):  # and the next melt is told the same, not that an empty lock holds the device
        with pytest.raises(DeviceBusy, match="could not create the lock") as busy:
            lock.acquire(sh, str(path), "lab", lock.me("run-new"))
        assert "cannot read" not in str(busy.value) and not path.exists(), str(busy.value)


def test_release_removes_only_our_own_lock(sh, path, other_melt):
    me = lock.me("run-mine")
    lock.acquire(sh, path, "lab", me)
    lock.release(sh, path, holder_of(other_melt, "run-other"))
    assert Path(path).read_text() == me.line() + "\n"
    lock.release(sh, path, me)
    assert not Path(path).exists()
    lock.release(sh, path, me)  # nothing there: nothing to do
    # taken over meanwhile (this melt was thought gone): releasing leaves the new holder's lock
    other = holder_of(other_melt, "run-other")
    lock.acquire(sh, path, "lab", other)
    lock.release(sh, path, me)
    assert Path(path).read_text() == other.line() + "\n"


def test_a_takeover_guard_left_behind_is_named(sh, path):
    gone = subprocess.Popen(["true"])
    stale = holder_of(gone, "run-crashed")
    gone.wait()
    lock.acquire(sh, path, "lab", stale)
    Path(path + ".takeover").write_text("")  # a melt killed in the middle of taking it over
    with pytest.raises(DeviceBusy) as busy:
        lock.acquire(sh, path, "lab", lock.me("run-new"))
    assert f"{path}.takeover is left by a melt" in str(busy.value) and "run-crashed" in str(busy.value)
    assert Path(path).read_text() == stale.line() + "\n"


# Each worker is one melt: told a lock path on stdin, it tries to take it and says what happened.
WORKER = r"""
import json, sys
from melt.devices import lock
from melt.devices.transport import LocalTransport

t = LocalTransport()
shell = json.loads(sys.argv[2])
me = lock.me(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    try:
        note = lock.acquire(lambda s, *a: t.run([*shell, "-c", s, "sh", *a], 30), line.strip(), "lab", me)
        print("won", note or "", flush=True)
    except lock.DeviceBusy as e:
        print("busy", str(e).replace("\\n", " "), flush=True)
"""


@pytest.fixture
def racers(shell):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, json.dumps(shell)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        for name in ("run-a", "run-b")
    ]
    for p in procs:
        assert p.stdout.readline() == "ready\n"
    yield procs
    for p in procs:
        p.stdin.close()
        p.wait(30)


def race(racers, lock_path: str) -> list[str]:
    for p in racers:  # both told at once; each starts its sh the moment it reads the line
        p.stdin.write(lock_path + "\n")
    for p in racers:
        p.stdin.flush()
    return [p.stdout.readline().strip() for p in racers]


def _one_winner(said: list[str]) -> str:
    winners = [s for s in said if s.startswith("won")]
    assert len(winners) == 1, said
    (loser,) = [s for s in said if s.startswith("busy")]
    winner = "run-a" if said[0].startswith("won") else "run-b"
    assert f"in use by melt run {winner}" in loser and "still running" in loser, said
    return winners[0]


def test_two_melts_racing_for_a_free_device_one_wins(racers, tmp_path):
    for i in range(40):
        _one_winner(race(racers, str(tmp_path / f"lock{i}")))


def test_two_melts_racing_to_take_over_a_stale_lock_one_wins(racers, tmp_path):
    gone = subprocess.Popen(["true"])
    stale = holder_of(gone, "run-crashed")
    gone.wait()
    for i in range(40):
        path = tmp_path / f"lock{i}"
        path.write_text(stale.line() + "\n")
        won = _one_winner(race(racers, str(path)))
        assert "took over the lock of melt run run-crashed" in won
        assert not Path(f"{path}.takeover").exists() and not Path(f"{path}.part").exists()
