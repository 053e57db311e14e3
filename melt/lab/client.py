"""One labgrid client session per coordinator in this melt process, and who melt is to labgrid.

labgrid's ClientSession (labgrid.remote.client) is asyncio code: it keeps the coordinator's places and
resources up to date from a gRPC stream. melt's device workers are threads, so the session's event loop runs
in a thread of its own and every call is handed to it (asyncio.run_coroutine_threadsafe) with a time limit.

Who melt is: labgrid names the holder of a place and the owner of a reservation `host/user` (the client's
LG_HOSTNAME or host name, LG_USERNAME or login name). melt adds its process to the user part,
`user.melt<pid>.<start time in 1/100 s>`, so that a melt on the same host can tell whether the melt that holds
a place still runs (psutil), and take the place over from one that was killed outright.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import os
import re
import socket
import threading
from dataclasses import dataclass

import psutil

from melt.errors import MeltError

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid-client's own default
CALL_S = 30.0  # one gRPC call to the coordinator
MELT_USER = re.compile(r"^(?P<user>.+)\.melt(?P<pid>\d+)\.(?P<started>\d+)$")


class LabError(MeltError):
    """The lab could not be asked, or refused: the message says what was asked, of which coordinator, and why."""


def coordinator_address(configured: str | None = None) -> str:
    """HOST:PORT of the coordinator: the profile's or the sweep's, else LG_COORDINATOR (as labgrid's own
    tools read it), else labgrid's default 127.0.0.1:20408."""
    return configured or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


@dataclass(frozen=True)
class Who:
    """A holder as labgrid records it (`host/user`), and, when the user part is a melt's, that melt's pid and
    start time."""

    host: str
    user: str
    pid: int | None = None
    started_cs: int | None = None

    @classmethod
    def parse(cls, name: str) -> Who:
        host, _, user = name.partition("/")
        m = MELT_USER.match(user)
        if not m:
            return cls(host, user)
        return cls(host, m.group("user"), int(m.group("pid")), int(m.group("started")))

    @property
    def name(self) -> str:
        """The string labgrid keeps: `host/user`, the user with melt's process in it."""
        user = self.user if self.pid is None else f"{self.user}.melt{self.pid}.{self.started_cs}"
        return f"{self.host}/{user}"

    def is_melt(self) -> bool:
        return self.pid is not None

    def alive_here(self) -> bool | None:
        """Whether this melt still runs: None where that cannot be told from here (another host, or not a melt)."""
        if self.pid is None or self.host != my_host():
            return None
        try:
            return abs(psutil.Process(self.pid).create_time() * 100 - self.started_cs) < 100
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def describe(self) -> str:
        if self.pid is None:
            return f"{self.user} on {self.host}"
        return f"melt (pid {self.pid}) of {self.user} on {self.host}"


def my_host() -> str:
    return os.environ.get("LG_HOSTNAME") or socket.gethostname()


def me(person: bool = False) -> Who:
    """This melt as labgrid will name it; person=True: the plain `host/user` labgrid-client uses (for `melt lab
    reserve`, whose hold outlives the command, as a person's does)."""
    user = os.environ.get("LG_USERNAME") or getpass.getuser()
    if person:
        return Who(my_host(), user)
    pid = os.getpid()
    return Who(my_host(), user, pid, int(psutil.Process(pid).create_time() * 100))


class LabClient:
    """A labgrid ClientSession to one coordinator, with melt's identity (`me()`), its event loop in a thread.

    places() and resources() are the session's live view (kept current by the coordinator's stream); call()
    runs one coordinator request (a labgrid_coordinator_pb2 message) and returns its answer. Raises LabError
    when the coordinator cannot be reached or refuses."""

    def __init__(self, address: str, timeout_s: float = 15.0, person: bool = False):
        from labgrid.remote.client import ClientSession  # labgrid is optional: imported where a lab is used

        self.address = address
        self.who = me(person)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"labgrid-{address}", daemon=True)
        self._thread.start()
        who = self.who

        class _Session(ClientSession):
            def gethostname(self):
                return who.host

            def getuser(self):
                return who.name.partition("/")[2]

        async def start():
            from labgrid.util.proxy import proxymanager

            session = _Session(proxymanager.get_grpc_address(address, default_port=20408), self.loop)
            await session.start()
            return session

        try:
            self.session = self._run(start(), timeout_s, "connect")
        except LabError:
            self._stop_loop()
            raise

    def _run(self, coro, timeout_s: float, what: str):
        from labgrid.remote.client import Error

        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise LabError(f"labgrid coordinator {self.address}: no answer to {what} within {timeout_s:g} s") from None
        except Error as e:
            raise LabError(f"labgrid coordinator {self.address}: {what}: {e}") from None
        except Exception as e:  # grpc.aio.AioRpcError: the coordinator's own refusal, with its reason
            details = e.details() if hasattr(e, "details") else str(e)
            raise LabError(f"labgrid coordinator {self.address}: {what}: {details}") from None

    def call(self, method: str, request, timeout_s: float = CALL_S):
        """One coordinator RPC (e.g. "AcquirePlace", AcquirePlaceRequest(...)), then a sync with the
        coordinator's stream, so that places() shows its effect when this returns."""

        async def go():
            answer = await getattr(self.session.stub, method)(request)
            await self.session.sync_with_coordinator()
            return answer

        return self._run(go(), timeout_s, method)

    def places(self) -> dict:
        """Place name -> labgrid.remote.common.Place (the session's view; read, do not change)."""
        return dict(self.session.places)

    def resource(self, path) -> dict | None:
        """The resource at (exporter, group, class, name) as the exporter published it: cls, params (address,
        username, port for a NetworkService), extra (proxy: the exporter's host), avail; None if not there."""
        exporter, group, _cls, name = path
        entry = self.session.resources.get(exporter, {}).get(group, {}).get(name)
        return None if entry is None else dict(entry.data)

    def close(self) -> None:
        try:
            self._run(self.session.stop(), 5, "stop")
            self._run(self.session.close(), 5, "close")
        except LabError:
            pass
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


_clients: dict[str, LabClient] = {}
_clients_lock = threading.Lock()


def client(address: str | None = None, person: bool = False) -> LabClient:
    """The session of this melt process to that coordinator (one per coordinator, opened on first use, closed
    at exit); person=True: as the plain user (me(person=True)). Raises LabError when labgrid is not installed
    or the coordinator does not answer."""
    address = coordinator_address(address)
    key = f"{address} person" if person else address
    with _clients_lock:
        if key not in _clients:
            try:
                import labgrid  # noqa: F401
            except ImportError:
                raise LabError(
                    "a labgrid lab is named, but labgrid is not installed: pip install 'melt[lab]'"
                ) from None
            _clients[key] = LabClient(address, person=person)
        return _clients[key]


@atexit.register
def close_all() -> None:
    with _clients_lock:
        for c in _clients.values():
            c.close()
        _clients.clear()
