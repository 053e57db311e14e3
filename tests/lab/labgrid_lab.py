"""A real labgrid lab on loopback: labgrid's own `labgrid-coordinator`, one `labgrid-exporter` per board
(each exporting a NetworkService for one of the lab's real sshd boards, tests/lab/sshd.py), and places made
with `labgrid-client create / add-match / set-tags`, as a lab admin would.

Every process runs in a session of its own and is ended by stop() (SIGTERM, then SIGKILL): nothing outlives
the fixture that started it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import sshd as lab_sshd

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    return str(BIN / name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    folder: Path
    address: str  # the coordinator, HOST:PORT
    coordinator: subprocess.Popen
    exporters: dict[str, subprocess.Popen] = field(default_factory=dict)  # exporter name -> process
    boards: dict[str, lab_sshd.Sshd] = field(default_factory=dict)  # place name -> its sshd
    client_key: Path | None = None  # authorised on every board
    known_hosts: Path | None = None  # every board's host key

    def client(self, *args: str, user: str | None = None, host: str | None = None, check: bool = True):
        """labgrid-client against this lab, as `user` on `host` where given (LG_USERNAME, LG_HOSTNAME)."""
        env = {**os.environ, "LG_COORDINATOR": self.address}
        if user:
            env["LG_USERNAME"] = user
        if host:
            env["LG_HOSTNAME"] = host
        done = subprocess.run([_tool("labgrid-client"), *args], capture_output=True, text=True, env=env, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"labgrid-client {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def acquired_by(self, place: str) -> str | None:
        """Who holds the place, from `labgrid-client who` (USER HOST PLACE CHANGED), or None."""
        for line in self.client("who").stdout.splitlines()[1:]:
            words = line.split()
            if len(words) >= 3 and words[2] == place:
                return f"{words[1]}/{words[0]}"
        return None

    def export(self, name: str, resource: str, tags: dict[str, str]) -> None:
        """One more exporter `exp-<name>` exporting `resource` (the YAML body of one labgrid resource, e.g.
        "NetworkService:\n  address: ...") in group <name>, and a place <name> matching it, with those tags."""
        config = self.folder / f"exporter-{name}.yaml"
        config.write_text(f"{name}:\n" + "".join(f"  {line}\n" for line in resource.strip().splitlines()))
        self.exporters[f"exp-{name}"] = _spawn(
            [_tool("labgrid-exporter"), "-c", self.address, "--name", f"exp-{name}", "--hostname", "127.0.0.1",
             str(config)],
            self.folder / f"exporter-{name}.log", self.folder,
        )  # fmt: skip
        self.client("-p", name, "create")
        cls = resource.strip().split(":", 1)[0]
        self.client("-p", name, "add-match", f"exp-{name}/{name}/{cls}")
        if tags:
            self.client("-p", name, "set-tags", *(f"{k}={v}" for k, v in tags.items()))
        deadline = time.monotonic() + 30
        while f"exp-{name}/{name}/{cls}" not in self.client("resources").stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"exporter exp-{name} did not publish {cls} within 30 s")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in [*self.exporters.values(), self.coordinator]:
            _end(proc)
        for board in self.boards.values():
            board.stop()


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def _spawn(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"labgrid-coordinator exited: {log.read_text()}")
        time.sleep(0.05)
    raise RuntimeError("labgrid-coordinator did not listen within 20 s")


def start(folder: Path, places: dict[str, dict[str, str]]) -> Lab:
    """A coordinator, and per place (name -> its tags) an sshd board, an exporter `exp-<name>` exporting the
    board as a NetworkService in group <name>, and the place matching that resource, with those tags."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    log = folder / "coordinator.log"
    coordinator = _spawn([_tool("labgrid-coordinator"), "-l", address], log, folder)
    lab = Lab(folder, address, coordinator)
    try:
        _wait_port(port, coordinator, log)
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        for name in places:
            board = lab_sshd.start(folder / name)
            lab.boards[name] = board
            config = folder / f"exporter-{name}.yaml"
            config.write_text(
                f"{name}:\n  NetworkService:\n    address: 127.0.0.1\n    username: {user}\n    port: {board.port}\n"
            )
            exporter = _spawn(
                [_tool("labgrid-exporter"), "-c", address, "--name", f"exp-{name}", "--hostname", "127.0.0.1",
                 str(config)],
                folder / f"exporter-{name}.log", folder,
            )  # fmt: skip
            lab.exporters[f"exp-{name}"] = exporter
        # one client key and one known_hosts for every board, as a lab's CI runner would have
        first = next(iter(lab.boards.values()))
        lab.client_key = first.client_key
        lab.known_hosts = folder / "known_hosts"
        lab.known_hosts.write_text("".join(b.known_hosts.read_text() for b in lab.boards.values()))
        for board in lab.boards.values():
            (board.folder / "authorized_keys").write_text(Path(f"{first.client_key}.pub").read_text())
        for name, tags in places.items():
            lab.client("-p", name, "create")
            lab.client("-p", name, "add-match", f"exp-{name}/{name}/NetworkService")
            if tags:
                lab.client("-p", name, "set-tags", *(f"{k}={v}" for k, v in tags.items()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = lab.client("resources").stdout
            if all(f"exp-{name}/{name}/NetworkService" in shown for name in places):
                return lab
            time.sleep(0.2)
        raise RuntimeError(f"the exporters did not publish their boards within 30 s: {shown}")
    except BaseException:
        lab.stop()
        raise
