"""Transports: run a command with a deadline, spawn one that melt can end later (its whole tree, through
a second connection), push and pull files. Local, SSH and ADB differ only here; sessions
(melt.devices.agent_session, tools_session) work over any of them. Every argument that reaches a remote
shell is quoted, so file names with spaces, quotes, $(...), backticks or ; are inert."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import tarfile
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from melt.devices import spawning
from melt.devices.process import run_captured
from melt.errors import MeltError


class TransportError(MeltError):
    """The device could not be reached or refused us; the message says why and what to do."""


@dataclass(frozen=True)
class Completed:
    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


class Transport(ABC):
    """run, spawn, push, pull_dir, close. `shares_files`: device paths are this machine's paths (local),
    so sessions need not copy a case's files."""

    name = "transport"
    shares_files = False

    @abstractmethod
    def client(self, argv: list[str]) -> list[str]:
        """The command line, on this machine, that runs argv on the device."""

    def run(self, argv: list[str], timeout_s: float) -> Completed:
        """Run argv on the device; never longer than timeout_s."""
        return _run_local(self.client(argv), timeout_s)

    def spawn(self, argv: list[str], state: str) -> spawning.Spawned:
        """Start argv on the device in its own session (melt.devices.spawning): `state` is a device folder
        for its pid and exit status; the handle's wait(timeout_s) and kill() end its whole tree."""
        return spawning.spawn(self, self.client(spawning.spawn_argv(state, argv)), state)

    @abstractmethod
    def push(self, local: Path, remote: str, timeout_s: float) -> None:
        """Copy a local file to a device path (its folder must exist). AdbTransport also takes a folder, whose
        files go into the device folder remote."""

    @abstractmethod
    def pull_dir(self, remote: str, local: Path, timeout_s: float) -> None:
        """Copy a device folder's files into a local folder."""

    def close(self) -> None:  # noqa: B027 - only SSH holds a connection
        """Release the connection, if the transport keeps one."""


def _run_local(cmd: list[str], timeout_s: float, input_bytes: bytes | None = None) -> Completed:
    returncode, out, err = run_captured(cmd, timeout_s, input_bytes)
    return Completed(returncode, out.decode(errors="replace"), err.decode(errors="replace"))


class LocalTransport(Transport):
    """This machine: argv runs as it is (no shell), files are copied."""

    name = "local"
    shares_files = True

    def client(self, argv: list[str]) -> list[str]:
        return list(argv)

    def push(self, local: Path, remote: str, timeout_s: float) -> None:
        if Path(local).resolve() == Path(remote).resolve():
            return
        try:
            shutil.copyfile(local, remote)
        except OSError as e:
            raise TransportError(f"copy {local} -> {remote} failed: {e}") from None

    def pull_dir(self, remote: str, local: Path, timeout_s: float) -> None:
        if Path(remote).resolve() != Path(local).resolve():
            shutil.copytree(remote, local, dirs_exist_ok=True)


class SshTransport(Transport):
    """OpenSSH client: the user's ~/.ssh/config, keys and agent apply; one multiplexed master
    connection for all commands; rsync for files where both ends have it."""

    name = "ssh"

    def __init__(self, spec):
        self.spec = spec
        self.control_dir = tempfile.mkdtemp(prefix="melt-ssh-")
        self._rsync: bool | None = None

    @property
    def target(self) -> str:
        return f"{self.spec.user}@{self.spec.host}" if self.spec.user else self.spec.host

    def ssh_options(self) -> list[str]:
        s = self.spec
        opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self.control_dir}/%C", "-o", "ControlPersist=120",
                "-o", f"StrictHostKeyChecking={'yes' if s.host_key_check == 'strict' else 'accept-new'}"]  # fmt: skip
        if s.ssh_config:
            opts[:0] = ["-F", os.path.expanduser(s.ssh_config)]
        if s.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={os.path.expanduser(s.known_hosts)}"]
        if s.port:
            opts += ["-p", str(s.port)]
        if s.identity:
            opts += ["-i", os.path.expanduser(s.identity), "-o", "IdentitiesOnly=yes"]
        return opts

    def _check(self, done: Completed) -> Completed:
        """ssh's own failures (exit 255) become TransportError with the cause and the fix."""
        if done.returncode != 255:
            return done
        err = done.stderr
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err or "Host key verification failed" in err:
            fingerprint = re.search(r"(SHA256:[A-Za-z0-9+/=]+)", err)
            raise TransportError(
                f"{self.spec.host}: the host key is not the one on record"
                + (f" (the host now offers {fingerprint.group(1)})" if fingerprint else "")
                + ". If the device was reinstalled, remove the old key with `ssh-keygen -R "
                + f"{self.spec.host}` and connect once to accept the new one; otherwise do not connect."
            )
        if "Permission denied" in err:
            last = err.strip().splitlines()[-1]
            raise TransportError(f"{self.target}: authentication refused ({last}); check user and identity")
        raise TransportError(
            f"{self.target}: unreachable: {err.strip().splitlines()[-1] if err.strip() else 'ssh exit 255'}"
        )

    def client(self, argv: list[str]) -> list[str]:
        return ["ssh", *self.ssh_options(), self.target, shlex.join(argv)]

    def run(self, argv: list[str], timeout_s: float) -> Completed:
        return self._check(_run_local(self.client(argv), timeout_s))

    def _has_rsync(self) -> bool:
        if self._rsync is None:
            remote = self.run(["sh", "-c", "command -v rsync"], 30)
            self._rsync = bool(shutil.which("rsync")) and remote.returncode == 0
        return self._rsync

    def _rsync_cmd(self) -> list[str]:
        # -s (protect args): remote paths go to rsync as they are, not through the remote shell
        return ["rsync", "-a", "-s", "--partial", "-e", shlex.join(["ssh", *self.ssh_options()])]

    def push(self, local: Path, remote: str, timeout_s: float) -> None:
        if self._has_rsync():
            done = _run_local([*self._rsync_cmd(), str(local), f"{self.target}:{remote}"], timeout_s)
        else:  # no rsync on the device: stream through ssh
            done = _run_local(
                ["ssh", *self.ssh_options(), self.target, shlex.join(["sh", "-c", 'cat > "$1"', "sh", remote])],
                timeout_s,
                Path(local).read_bytes(),
            )
        if done.returncode != 0:
            self._check(done)
            raise TransportError(f"push {local} -> {self.target}:{remote} failed: {done.stderr.strip()[-300:]}")

    def pull_dir(self, remote: str, local: Path, timeout_s: float) -> None:
        local.mkdir(parents=True, exist_ok=True)
        if self._has_rsync():
            src = f"{self.target}:{remote.rstrip('/')}/"
            done = _run_local([*self._rsync_cmd(), src, f"{local}/"], timeout_s)
        else:  # no rsync on the device: a tar stream through ssh
            cmd = ["ssh", *self.ssh_options(), self.target, shlex.join(["tar", "-C", remote, "-cf", "-", "."])]
            returncode, out, err = run_captured(cmd, timeout_s)  # killable like every transport command
            if returncode is None:
                raise TransportError(f"pull {self.target}:{remote}: no answer within {timeout_s} s")
            done = Completed(returncode, "", err.decode(errors="replace"))
            if returncode == 0:
                with tarfile.open(fileobj=io.BytesIO(out)) as tar:
                    tar.extractall(local, filter="data")
        if done.returncode != 0:
            self._check(done)
            raise TransportError(f"pull {self.target}:{remote} failed: {done.stderr.strip()[-300:]}")

    def close(self) -> None:
        _run_local(["ssh", *self.ssh_options(), "-O", "exit", self.target], 10)
        shutil.rmtree(self.control_dir, ignore_errors=True)


# What adb itself prints when it cannot reach the device (Debian's adb 1.0.41: `error: device offline`,
# `adb: error: failed to get feature set: device unauthorized.` followed by advice lines, `error: device
# 'X' not found`), as against what the command run there printed: the first such line, anchored.
_ADB_SAID = re.compile(
    r"^(?:adb: )?error: (?:failed to get feature set: )?"
    r"(device offline|device unauthorized|device '[^'\n]*' not found|no devices/emulators found"
    r"|more than one device/emulator|cannot connect to daemon[^\n]*)",
    re.MULTILINE,
)
_ADB_ADVICE = {
    "offline": "the phone is connected but its adbd does not answer: reconnect the cable (or `adb reconnect`), "
    "then check `adb devices`",
    "unauthorized": "this computer's adb key is not authorised: accept the USB debugging prompt on the phone, "
    "then check `adb devices`",
}


class AdbTransport(Transport):
    """The `adb` command line, always with -s SERIAL. `adb shell` returns the remote command's exit status
    where the phone's adbd speaks shell protocol v2 (feature shell_v2, Android 7.0 on): asked once, and a
    phone without it is refused, since melt could not tell a failed command from a good one. push and pull
    copy files and folders (adb's sync protocol)."""

    name = "adb"

    def __init__(self, spec, adb: str = "adb"):
        self.spec = spec
        self.adb = adb
        self._shell_v2 = False

    def _base(self) -> list[str]:
        server = getattr(self.spec, "server", None)
        if server:  # another host's adb server (adb -a there): -H/-P, as adb's own options say
            host, port = server.rsplit(":", 1)
            return [self.adb, "-H", host, "-P", port, "-s", self.spec.serial]
        return [self.adb, "-s", self.spec.serial]

    def _check(self, done: Completed) -> Completed:
        """adb's own failures (the device not found, offline, unauthorized; no adb server) become
        TransportError with the cause and the fix; anything else is the command's own."""
        if done.returncode in (0, None):
            return done
        said = _ADB_SAID.search(done.stderr)
        if said:
            what = said.group(1)
            advice = next((text for word, text in _ADB_ADVICE.items() if word in what), None)
            raise TransportError(
                f"adb device {self.spec.serial}: {what}; "
                + (advice or "check `adb devices` (cable, USB debugging, `adb connect HOST:PORT` for a network phone)")
            )
        return done

    def _ensure_shell_v2(self) -> None:
        if self._shell_v2:
            return
        if not shutil.which(self.adb):
            raise TransportError("adb not found on PATH; install Android platform-tools (Debian: apt install adb)")
        done = self._check(_run_local([*self._base(), "features"], 30))
        if done.timed_out or done.returncode != 0:
            raise TransportError(f"adb device {self.spec.serial}: `adb features` failed: {done.stderr.strip()[-300:]}")
        if "shell_v2" not in done.stdout.split():
            raise TransportError(
                f"adb device {self.spec.serial}: its adbd has no shell protocol v2 (Android before 7.0), so `adb "
                "shell` cannot pass a command's exit status back; melt needs it to tell a failed command from a "
                "good one"
            )
        self._shell_v2 = True

    def client(self, argv: list[str]) -> list[str]:
        self._ensure_shell_v2()
        return [*self._base(), "shell", shlex.join(argv)]

    def run(self, argv: list[str], timeout_s: float) -> Completed:
        return self._check(_run_local(self.client(argv), timeout_s))

    def push(self, local: Path, remote: str, timeout_s: float) -> None:
        """A file to a device path, or a folder's files into a device folder (made where missing): adb push
        of `folder/.`, since `adb push folder remote` puts the folder inside remote where remote exists."""
        source = f"{local}/." if Path(local).is_dir() else str(local)
        done = self._check(_run_local([*self._base(), "push", source, remote], timeout_s))
        if done.timed_out:
            raise TransportError(f"adb push {local} -> {remote}: no answer within {timeout_s:g} s")
        if done.returncode != 0:
            raise TransportError(f"adb push {local} -> {remote} failed: {(done.stderr or done.stdout).strip()[-300:]}")

    def pull_dir(self, remote: str, local: Path, timeout_s: float) -> None:
        local.mkdir(parents=True, exist_ok=True)
        done = self._check(_run_local([*self._base(), "pull", remote.rstrip("/") + "/.", str(local)], timeout_s))
        if done.timed_out:
            raise TransportError(f"adb pull {remote}: no answer within {timeout_s:g} s")
        if done.returncode != 0:
            raise TransportError(f"adb pull {remote} failed: {(done.stderr or done.stdout).strip()[-300:]}")
