"""A labgrid place as a melt transport: held (reserved and acquired) for a while, its NetworkService reached
with melt's SSH transport while it is held. Outside a hold every call is refused, so nothing touches a device
that someone else may hold."""

from __future__ import annotations

import threading
from pathlib import Path

from melt.devices import profile as profiles
from melt.devices.transport import AdbTransport, SshTransport, Transport, TransportError
from melt.lab import client as lab_client
from melt.lab import lease


class PlaceTransport(Transport):
    """run, spawn, push, pull_dir over SSH to the place's NetworkService (or, with adb_serial, through the adb
    server it is), between hold() and let_go().

    hold(stop, on_wait) -> lease.Held (raises lease.PlaceBusy, LeaseInterrupted, LabError); let_go() releases
    the place (labgrid then gives it to whoever waits longest)."""

    name = "labgrid"

    def __init__(self, spec: profiles.LabgridTransport):
        if not spec.place:
            raise TransportError("a labgrid profile used on its own must name its place (transport.place)")
        self.spec = spec
        self.held: lease.Held | None = None
        self._ssh: Transport | None = None  # SSH, or adb through the exporter host's server
        self._lock = threading.Lock()

    @property
    def place(self) -> str:
        return self.spec.place

    def hold(self, stop: threading.Event | None = None, on_wait=None) -> lease.Held:
        c = lab_client.client(self.spec.coordinator)
        held = lease.take(c, self.place, self.spec.wait_s, stop, on_wait)
        s = self.spec
        if s.adb_serial:  # a phone behind its exporter host's adb server
            inner: Transport = AdbTransport(
                profiles.AdbTransport(kind="adb", serial=s.adb_serial, server=f"{held.address}:{held.port}")
            )
        else:
            inner = SshTransport(
                profiles.SshTransport(
                    kind="ssh", host=held.address, port=held.port, user=s.user or held.username or None,
                    identity=s.identity, host_key_check=s.host_key_check, ssh_config=s.ssh_config,
                    known_hosts=s.known_hosts,
                )
            )  # fmt: skip
        with self._lock:
            self.held, self._ssh = held, inner
        return held

    def let_go(self) -> lease.Held | None:
        """Release the place (and close the SSH connection to it); the Held, its released_at set, or None."""
        with self._lock:
            held, ssh = self.held, self._ssh
            self.held, self._ssh = None, None
        if held is None:
            return None
        try:
            if ssh is not None:
                ssh.close()
        finally:
            lease.release(lab_client.client(self.spec.coordinator), held.place, held.token)
            held.released_at = lease._now()
        return held

    def _inner(self) -> Transport:
        ssh = self._ssh
        if ssh is None:
            raise TransportError(f"place {self.place} is not held by this melt now")
        return ssh

    def client(self, argv: list[str]) -> list[str]:
        return self._inner().client(argv)

    def run(self, argv: list[str], timeout_s: float):
        return self._inner().run(argv, timeout_s)

    def push(self, local: Path, remote: str, timeout_s: float) -> None:
        self._inner().push(local, remote, timeout_s)

    def pull_dir(self, remote: str, local: Path, timeout_s: float) -> None:
        self._inner().pull_dir(remote, local, timeout_s)

    def close(self) -> None:
        self.let_go()
