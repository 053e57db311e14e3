"""melt.devices.spawning: SPAWN, REAP and LEFTOVERS under every shell a device may have (dash, mksh, busybox
sh, bash, and mksh with toybox as on Android), with setsid and without, with PATH holding only the tools the
scripts use; then Spawned end to end through the local transport and real adb to the stand-in phone
(tests/lab/adbd.py).

Processes of a tree are found by a token in their environment (every process of the tree inherits it), so
a test sees a leftover whichever process group it ended up in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_adb import adbd, phone_profile  # noqa: F401 - the stand-in phone's adbd as a fixture

from melt.devices import spawning
from melt.devices.profile import load_profile
from melt.devices.spawning import LEFTOVERS, REAP, SPAWN, Reaped, parse_leftovers, parse_reap
from melt.devices.transport import AdbTransport, LocalTransport

LAB = Path(__file__).resolve().parent / "lab"
TOOLS = ["sed", "cut", "sleep", "mkdir", "rm", "mv", "cat", "tr", "printf", "kill"]
# a shell with a background and a foreground child; `; :` keeps the shell itself in the tree (dash would
# otherwise exec the last command)
TREE = "sleep 300 & sleep 300; :"
SHELLS = {  # name: (shell binary, where its tools come from)
    "dash": ("dash", "host"),
    "mksh": ("mksh", "host"),
    "busybox sh": ("busybox", "busybox"),
    "bash": ("bash", "host"),
    "mksh + toybox": ("mksh", "toybox"),  # Android's own pair
}


# -- processes ----------------------------------------------------------------------------------------
def tree(token: str) -> set[int]:
    """Live (not zombie) processes whose environment carries MELT_TREE=token."""
    want = f"MELT_TREE={token}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if want in (entry / "environ").read_bytes().split(b"\0") and state_of(int(entry.name)) != "Z":
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def state_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat, as SPAWN records it."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]


def alive(pid: int) -> bool:
    return state_of(pid) not in (None, "Z")


def wait_until(condition, timeout_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    done = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split() if alive(int(p))]


@pytest.fixture
def bystander():
    """A process of ours that leads its own process group, unrelated to any spawn: what a reused pid names."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


# -- shells -------------------------------------------------------------------------------------------
@dataclass
class Shell:
    name: str
    argv: list[str]
    env: dict[str, str]
    token: str

    def run(self, script: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.argv, "-c", script, "sh", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def spawn(self, state: Path, command: str = TREE) -> subprocess.Popen:
        """SPAWN through a client of its own session, as spawning.spawn starts every transport's client."""
        return subprocess.Popen(
            [*self.argv, "-c", SPAWN, "sh", str(state), "sh", "-c", command],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def _builtin(shell: list[str], name: str) -> bool:
    done = subprocess.run([*shell, "-c", f"type {name}"], env={"PATH": "/nonexistent"}, capture_output=True, text=True)
    return "builtin" in done.stdout


def _applets(multicall: str) -> set[str]:
    listing = subprocess.run([multicall, "--list"] if multicall == "busybox" else [multicall], capture_output=True)
    return set(listing.stdout.decode().split())


@pytest.fixture(params=[(name, setsid) for name in SHELLS for setsid in (True, False)],
                ids=lambda p: f"{p[0]}, {'setsid' if p[1] else 'no setsid'}")  # fmt: skip
def shell(request, tmp_path) -> Shell:
    """A shell whose PATH holds symlinks to only the tools the scripts use (from the host, busybox or
    toybox), to `sh` (the same shell, for the command's own `sh -c`), and to setsid or not."""
    name, with_setsid = request.param
    binary, provider = SHELLS[name]
    path = shutil.which(binary)
    if path is None or (provider != "host" and not shutil.which(provider)):
        pytest.fail(f"{binary} / {provider} not installed: run scripts/lab_packages.sh")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "sh").symlink_to(path)
    argv = [str(tools / "sh")] if binary == "busybox" else [path]  # busybox picks the applet by name
    applets = _applets(provider) if provider != "host" else set()
    for tool in TOOLS + (["setsid"] if with_setsid else []):
        if tool != "setsid" and _builtin(argv, tool):
            continue
        target = provider if tool in applets else shutil.which(tool)
        (tools / tool).symlink_to(shutil.which(target))
    if not with_setsid:
        assert subprocess.run([*argv, "-c", "command -v setsid"], env={"PATH": str(tools)}).returncode != 0
    token = uuid.uuid4().hex
    yield Shell(f"{name}, {'setsid' if with_setsid else 'no setsid'}", argv, {"PATH": str(tools), "MELT_TREE": token},
                token)  # fmt: skip
    for pid in tree(token):  # a failed test must not leave its sleeps behind
        os.kill(pid, signal.SIGKILL)


def _running(shell: Shell, state: Path, client: subprocess.Popen) -> tuple[int, str, set[int]]:
    """Wait until SPAWN wrote its pid file and the tree runs: (pgid, start time, the tree's processes
    other than the client)."""
    wait_until(lambda: (state / "pid").is_file(), what="the pid file")
    wait_until(lambda: len(tree(shell.token) - {client.pid}) >= 3, what="the tree (sh and two sleeps)")
    pgid, start = (state / "pid").read_text().split()
    return int(pgid), start, tree(shell.token) - {client.pid}


# -- the scripts under each shell ---------------------------------------------------------------------
def test_tree_outlives_its_client_and_reap_ends_all_of_it(shell, tmp_path):
    state = tmp_path / "spawned" / "r--c"
    client = shell.spawn(state)
    pgid, start, members = _running(shell, state, client)
    assert alive(pgid) and os.getpgid(pgid) == pgid, "the pid file names the group's leader"
    assert start == start_time(pgid)
    assert {os.getpgid(p) for p in members} == {pgid}, "every process of the tree is in the group"
    if "no setsid" not in shell.name:
        assert {os.getsid(p) for p in members} == {pgid} != {os.getsid(client.pid)}
    client.kill()  # a dead link: the client goes, the command does not depend on it
    client.wait()
    time.sleep(0.3)
    assert all(alive(p) for p in members), "the tree must outlive its client"
    reaped = shell.run(REAP, str(state))
    assert reaped.stdout == "killed\ngone\n", reaped.stdout + reaped.stderr
    assert not tree(shell.token) and not group_members(pgid)
    assert not state.exists()


def test_reap_reports_the_exit_status_of_a_command_that_ended(shell, tmp_path):
    state = tmp_path / "spawned" / "r--c"
    client = shell.spawn(state, "exit 7")
    assert client.wait(10) == 7
    assert (state / "exit").read_text() == "7\n"
    reaped = shell.run(REAP, str(state))
    assert reaped.stdout == "exit 7\ngone\n", reaped.stdout + reaped.stderr
    assert parse_reap(reaped.stdout).returncode == 7 and not state.exists()


def test_reap_leaves_a_reused_pid_alone(shell, tmp_path, bystander):
    """A pid file whose pid now names another process (its start time differs): not ours, not killed. The
    same pid file with the right start time does kill it, so the start time is what spared it."""
    wait_until(lambda: alive(bystander.pid))
    real = start_time(bystander.pid)
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "pid").write_text(f"{bystander.pid} {int(real) + 1}\n")
    reaped = shell.run(REAP, str(stale))
    assert reaped.stdout == "gone\n" and not stale.exists()
    time.sleep(0.2)
    assert bystander.poll() is None, "REAP killed a process that only reuses the pid"
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "pid").write_text(f"{bystander.pid} {real}\n")
    waiter = threading.Thread(target=bystander.wait)  # its parent (this test) reaps it, as a device's init would
    waiter.start()
    assert shell.run(REAP, str(ours)).stdout == "killed\ngone\n"
    waiter.join(5)
    assert bystander.returncode == -signal.SIGKILL


def test_leftovers_end_only_the_running_tree(shell, tmp_path, bystander):
    folder = tmp_path / "spawned"
    running = shell.spawn(folder / "old--running")
    _, _, members = _running(shell, folder / "old--running", running)
    running.kill()  # its link died
    running.wait()
    ended = shell.spawn(folder / "old--ended", "exit 0")
    assert ended.wait(10) == 0
    wait_until(lambda: alive(bystander.pid))
    (folder / "old--stale").mkdir()
    (folder / "old--stale" / "pid").write_text(f"{bystander.pid} {int(start_time(bystander.pid)) + 1}\n")
    done = shell.run(LEFTOVERS, str(folder))
    assert done.returncode == 0, done.stderr
    found = {name: (r.returncode, r.gone, r.killed) for name, r in parse_leftovers(done.stdout).items()}
    expected = {"old--running": (None, True, True), "old--ended": (0, True, False), "old--stale": (None, True, False)}
    assert found == expected, done.stdout  # only the running tree is said to be killed
    assert not any(alive(p) for p in members) and not tree(shell.token)
    assert bystander.poll() is None
    assert list(folder.iterdir()) == []


def test_leftovers_of_an_empty_or_missing_folder_say_nothing(shell, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        done = shell.run(LEFTOVERS, str(folder))
        assert done.returncode == 0 and done.stdout == "" and parse_leftovers(done.stdout) == {}


def test_reap_that_comes_before_the_pid_file_still_ends_the_tree(shell, tmp_path):
    for attempt in range(3):
        state = tmp_path / f"r--{attempt}"
        client = shell.spawn(state)
        # its parent reaps the client when it ends (without setsid, REAP ends the client's own group)
        waiter = threading.Thread(target=client.wait)
        waiter.start()
        reaped = shell.run(REAP, str(state))  # at once: SPAWN has likely not written its pid file yet
        assert reaped.stdout == "killed\ngone\n", reaped.stdout + reaped.stderr
        waiter.join(10)
        time.sleep(0.2)  # a tree REAP missed would have started by now
        assert not tree(shell.token), f"attempt {attempt}: the tree outlived REAP"
        assert not state.exists()


# -- parsing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, returncode, gone",
    [
        ("gone\n", None, True),
        ("exit 0\ngone\n", 0, True),
        ("exit 7\ngone\n", 7, True),
        ("exit 137\ngone\n", 137, True),
        ("exit -1\ngone\n", -1, True),
        ("alive 4242\n", None, False),
        ("exit 3\nalive 4242\n", 3, False),
        ("exit 3 gone ", 3, True),  # as LEFTOVERS joins the lines
        ("", None, None),  # the device said nothing: not confirmed
        ("sh: can't fork\n", None, None),
        ("exit\ngone\n", None, True),  # an exit file that was empty
        ("exit x\n", None, None),
    ],
)
def test_parse_reap(text, returncode, gone):
    reaped = parse_reap(text)
    assert (reaped.returncode, reaped.gone) == (returncode, gone)
    assert reaped.detail == text.strip()


def test_parse_leftovers_of_generated_output():
    rows = {"r1--a": "killed gone ", "r1--b": "exit 0 gone ", "r2--a b": "exit 9 killed alive 77 ", "r3--c": ""}
    text = "".join(f"{name}\t{said}\n" for name, said in rows.items())
    found = parse_leftovers(text)
    assert found == {
        "r1--a": Reaped(None, True, "killed gone", killed=True),
        "r1--b": Reaped(0, True, "exit 0 gone"),
        "r2--a b": Reaped(9, False, "exit 9 killed alive 77", killed=True),
        "r3--c": Reaped(None, None, ""),
    }
    assert parse_leftovers("") == {} and parse_leftovers("\n\n") == {}


# -- Spawned through the transports -------------------------------------------------------------------
@pytest.fixture
def token(monkeypatch) -> str:
    """Marks every process a spawned command starts (the transports' clients pass the environment on)."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("MELT_TREE", value)
    yield value
    for pid in tree(value):
        os.kill(pid, signal.SIGKILL)


def _adb(adbd, token: str) -> tuple[AdbTransport, Path]:  # noqa: F811
    """Real adb to the stand-in phone (tests/test_adb.py's `adbd`), its shell given MELT_TREE=token. The state
    folders are this machine's paths under the phone's /data, which the phone sees too (its /tmp is ours)."""
    adbd.set_env({"MELT_TREE": token})
    transport = AdbTransport(load_profile(str(phone_profile(adbd.state / "pixel.yaml", adbd.serial))).spec.transport)
    return transport, adbd.path("/data/local/tmp/melt/spawned")


@pytest.fixture(params=["local", "adb"])
def transport(request, tmp_path, token):
    if request.param == "local":
        return LocalTransport(), tmp_path / "spawned"
    return _adb(request.getfixturevalue("adbd"), token)


def test_wait_past_its_timeout_ends_the_whole_tree(transport, token):
    t, root = transport
    started = time.monotonic()
    ended = t.spawn(["sh", "-c", TREE], str(root / "r--late")).wait(1.0)
    assert ended == spawning.Ended(None, True, None, True)
    assert time.monotonic() - started < 1.0 + 10
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in tree(token)}
    assert not left and not (root / "r--late").exists(), left


def test_exit_status_comes_from_the_device(transport, token):
    t, root = transport
    ended = t.spawn(["sh", "-c", "sleep 0.2; exit 3"], str(root / "r--three")).wait(30)
    assert ended == spawning.Ended(3, False, None, True)
    assert not tree(token)


def test_a_killed_client_is_a_lost_link_and_the_tree_still_ends(transport, token):
    t, root = transport
    state = root / "r--cut"
    spawned = t.spawn(["sh", "-c", TREE], str(state))
    wait_until(lambda: (state / "pid").is_file(), what="the pid file")
    pgid = int((state / "pid").read_text().split()[0])
    wait_until(lambda: len(group_members(pgid)) >= 3, what="the tree")
    threading.Timer(0.3, spawned.client.kill).start()  # the link dies while melt waits
    started = time.monotonic()
    ended = spawned.wait(60)
    assert time.monotonic() - started < 15
    assert ended.returncode is None and not ended.timed_out and ended.gone is True
    assert ended.lost and "connection to the device ended before the command did" in ended.lost
    wait_until(lambda: not tree(token), what="nothing of the tree left")
    assert not group_members(pgid)


def test_kill_all_ends_every_live_spawn(tmp_path, adbd, token):  # noqa: F811
    adb, adb_root = _adb(adbd, token)
    local = LocalTransport()
    handles = [
        local.spawn(["sh", "-c", TREE], str(tmp_path / "spawned" / "r--a")),
        local.spawn(["sh", "-c", TREE], str(tmp_path / "spawned" / "r--b")),
        adb.spawn(["sh", "-c", TREE], str(adb_root / "r--c")),
    ]
    states = [Path(h.state) for h in handles]
    wait_until(lambda: all((s / "pid").is_file() for s in states), what="the pid files")
    groups = [int((s / "pid").read_text().split()[0]) for s in states]
    wait_until(lambda: all(len(group_members(g)) >= 3 for g in groups), what="the trees")
    assert set(handles) <= spawning._live
    reaped = spawning.kill_all(10)
    assert len(reaped) == 3 and all(r.gone is True for r in reaped)
    assert not any(group_members(g) for g in groups) and not any(s.exists() for s in states)
    for h in handles:  # what melt does after: each worker's wait returns at once, with the same answer
        ended = h.wait(10)
        assert ended.gone is True and ended.returncode is None
    assert not set(handles) & spawning._live
    wait_until(lambda: not tree(token), what="nothing left")
