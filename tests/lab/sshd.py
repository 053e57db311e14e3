"""A real OpenSSH sshd for the tests, on a loopback port, with its own host key and a client key.

It plays a device: commands run on this machine as the test user, and the device's sensor root is
a recorded board tree, so the whole remote path (ssh, rsync, the agent zipapp, pull-back) is real.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    folder: Path
    client_key: Path
    known_hosts: Path
    host_key: Path
    proc: subprocess.Popen
    host: str = "127.0.0.1"
    netns: str | None = None  # the network namespace it lives in, joined to us by a veth pair
    veth: str | None = None  # our end of the pair: down cuts the link

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True)

    def cut(self) -> None:
        """Pull the cable: the device stops answering (packets vanish; nothing is refused)."""
        subprocess.run(["ip", "link", "set", self.veth, "down"], check=True)

    def restore(self) -> None:
        subprocess.run(["ip", "link", "set", self.veth, "up"], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True)


def netns_available() -> bool:
    probe = f"melt-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


def start_in_netns(folder: Path, index: int) -> Sshd:
    """sshd in its own network namespace at 10.231.<index>.2, reached through a veth pair from
    10.231.<index>.1: the project's own test host, so a test can cut its link."""
    ns, host_end, dev_end = f"melt-lab-{os.getpid()}-{index}", f"mlh{os.getpid() % 10000}{index}", "eth0"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    _ip("link", "add", host_end, "type", "veth", "peer", "name", f"mld{os.getpid() % 10000}{index}")
    _ip("link", "set", f"mld{os.getpid() % 10000}{index}", "netns", ns)
    _ip("link", "set", f"mld{os.getpid() % 10000}{index}", "name", dev_end, ns=ns)
    _ip("addr", "add", f"10.231.{index}.1/30", "dev", host_end)
    _ip("link", "set", host_end, "up")
    _ip("addr", "add", f"10.231.{index}.2/30", "dev", dev_end, ns=ns)
    _ip("link", "set", dev_end, "up", ns=ns)
    _ip("link", "set", "lo", "up", ns=ns)
    server = start(folder, address=f"10.231.{index}.2", port=22, netns=ns)
    server.veth = host_end
    return server


def start(folder: Path, address: str = "127.0.0.1", port: int | None = None, netns: str | None = None) -> Sshd:
    folder.mkdir(parents=True, exist_ok=True)
    host_key = keygen(folder / "host_ed25519")
    client_key = keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    os.chmod(folder / "authorized_keys", 0o600)
    port = port or _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {host_key}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        "StrictModes no\nUsePAM no\nMaxStartups 50\nMaxSessions 50\nLogLevel ERROR\n"
        "AcceptEnv LANG LC_*\nSubsystem sftp internal-sftp\n"
        # the agent-environment tests put speed-relevant variables into the login shell with ssh's SetEnv
        "AcceptEnv OMP_* GGML_* MKL_* LD_PRELOAD\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
    cmd = [SSHD, "-D", "-e", "-f", str(config)]
    with open(folder / "sshd.log", "wb") as log:  # sshd keeps its own copy of the descriptor
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *cmd] if netns else cmd, stderr=log)
    known_hosts = folder / "known_hosts"
    pub = (folder / "host_ed25519.pub").read_text().split()
    name = address if port == 22 else f"[{address}]:{port}"
    known_hosts.write_text(f"{name} {pub[0]} {pub[1]}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((address, port)) == 0:
                return Sshd(port, folder, client_key, known_hosts, host_key, proc, host=address, netns=netns)
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        time.sleep(0.05)
    raise RuntimeError("sshd did not listen within 10 s")
