"""A device for one run: its transport, workdir, lock, leftovers and the sessions that run its cases.

What a case needs decides the session, not the transport: runtimes that run in the agent (llama_cpp,
onnxruntime) go to the agent session where the device has Python; llama.cpp's own tools (llama_cpp_cli)
go to the tools session where the profile names llama_cpp_bin. Either works over local, SSH or ADB.

Order of work on a device: open() takes the lock (melt.devices.lock), then ends whatever an earlier melt
left running there (melt.devices.spawning.LEFTOVERS), before any case starts; close() releases the lock.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from melt.deadline import Deadline
from melt.devices import lock, spawning
from melt.devices.agent_session import AgentSession
from melt.devices.capability import device_python
from melt.devices.exits import AgentExit
from melt.devices.profile import DeviceProfile, reach_kind
from melt.devices.provision import Provisioner
from melt.devices.tools_session import ToolsSession
from melt.devices.transport import AdbTransport, LocalTransport, SshTransport, TransportError
from melt.errors import MeltError
from melt.lab.transport import PlaceTransport
from melt.runtimes import llama_cpp_cli
from melt.sources import ResolvedModel, cache_dir

SHORT_S = 60.0
AGENT_RUNTIMES = ("llama_cpp", "onnxruntime")
TOOLS_RUNTIMES = ("llama_cpp_cli",)


def make_transport(profile: DeviceProfile):
    kind = profile.spec.transport.kind
    if kind == "local":
        return LocalTransport()
    if kind == "ssh":
        return SshTransport(profile.spec.transport)
    if kind == "adb":
        return AdbTransport(profile.spec.transport)
    if kind == "labgrid":  # a place of a labgrid lab, held per case (melt/lab/)
        return PlaceTransport(profile.spec.transport)
    raise MeltError(f"device {profile.name}: transport {kind!r} is not supported by this version of melt")


def default_workdir(profile: DeviceProfile) -> str:
    kind = profile.spec.transport.kind
    if kind == "local":
        return str(cache_dir() / "devices" / profile.name)
    return "/data/local/tmp/melt" if reach_kind(profile.spec.transport) == "adb" else "~/.melt"


@dataclass
class Device:
    profile: DeviceProfile
    transport: object = None
    notes: list[str] = field(default_factory=list)  # lock take-overs and leftovers ended, for run.json
    stop: object = None  # a threading.Event set on Ctrl-C: ends a wait for a lab place
    on_wait: object = None  # on_wait(device, how the place is held, by whom): a wait for a lab place begins

    def __post_init__(self):
        self.t = self.transport or make_transport(self.profile)
        self.python = device_python(self.profile)
        self._workdir: str | None = None
        self._provisioner: Provisioner | None = None
        self._holder: lock.Holder | None = None
        self._sessions: dict[str, object] = {}
        self._unconfirmed = False  # a case's tree could not be confirmed gone: check before the next case
        self._run_id = ""
        self.holds: list = []  # a lab place's holds (melt.lab.lease.Held), in order

    @property
    def name(self) -> str:
        return self.profile.name

    def sh(self, script: str, *args: str, timeout_s: float = SHORT_S):
        """A POSIX sh script on the device, its arguments as $1.. (never pasted into the script), under LC_ALL=C."""
        done = self.t.run(["sh", "-c", llama_cpp_cli.SH_ENV + script, "sh", *args], timeout_s)
        if done.timed_out:
            raise TransportError(f"device {self.name}: no answer within {timeout_s:g} s")
        return done

    @property
    def workdir(self) -> str:
        if self._workdir is None:
            wanted = self.profile.spec.workdir or default_workdir(self.profile)
            if wanted.startswith("~"):
                wanted = self.sh('printf %s "$HOME"').stdout.strip() + wanted[1:]
            done = self.sh('mkdir -p "$1/agents" "$1/models" "$1/runs" "$1/spawned"', wanted)
            if done.returncode != 0:
                raise TransportError(
                    f"device {self.name}: cannot create workdir {wanted}: {done.stderr.strip()[-200:]}"
                )
            self._workdir = wanted
        return self._workdir

    @property
    def provision(self) -> Provisioner:
        if self._provisioner is None:
            self._provisioner = Provisioner(self.name, self.t, self.workdir, self.sh, self.python)
        return self._provisioner

    def case_folder(self, run_id: str, case_dir: Path) -> str:
        """The case's folder on the device, made empty there: case_dir itself where the device shares this
        machine's files (local), else workdir/runs/<run_id>/<case_id>."""
        if self.t.shares_files:
            return str(case_dir.resolve())
        remote = f"{self.workdir}/runs/{run_id}/{case_dir.name}"
        self.sh('rm -rf "$1" && mkdir -p "$1"', remote)
        return remote

    def spawn_state(self, run_id: str, case_id: str) -> str:
        return f"{self.workdir}/spawned/{run_id}--{case_id}"

    # -- one run on the device ------------------------------------------------------------------------
    def open(self, run_id: str) -> list[str]:
        """Lock the device for this run and end what earlier runs left there. Returns notes for run.json.
        Raises DeviceBusy (another melt holds it) or TransportError (unreachable; leftovers that would not end);
        for a lab place first holds the place (melt.lab.lease: PlaceBusy, LeaseInterrupted, LabError)."""
        self._run_id = run_id
        if self.leased:
            self._hold()
        holder = lock.me(run_id)
        note = lock.acquire(self.sh, f"{self.workdir}/lock", self.name, holder)
        self._holder = holder
        if note:
            self.notes.append(note)
        self.end_leftovers()
        return self.notes

    # -- a lab place: held per case, so that other melts' cases can run on it in between -----------------
    @property
    def leased(self) -> bool:
        return isinstance(self.t, PlaceTransport)

    def hold(self) -> None:
        """A lab place: hold it (waiting for it, as a run does) until close(); nothing for other devices.
        For a look at the device outside a run (`melt devices probe`, reachable())."""
        if self.leased:
            self._hold()

    def _hold(self) -> None:
        def told(how: str) -> None:
            if callable(self.on_wait):
                self.on_wait(self.name, self.t.place, how)

        held = self.t.hold(self.stop, told)
        self.holds.append(held)
        self.notes.extend(held.notes)

    def pause(self) -> None:
        """Between cases on a lab place: unlock the device and release the place."""
        if not self.leased:
            return
        try:
            if self._holder is not None and self._workdir is not None:
                lock.release(self.sh, f"{self.workdir}/lock", self._holder)
        except (TransportError, MeltError):
            pass  # the lock is stale once released places are taken over; the next melt takes it over
        finally:
            self._holder = None
            self.t.let_go()

    @contextmanager
    def turn(self):
        """One case's hold of a lab place: hold it (waiting for it), lock the device, end leftovers; release
        after. Yields the held place (melt.lab.lease.Held), or None for a device that is not a lab place."""
        if not self.leased:
            yield None
            return
        self.open(self._run_id)
        try:
            yield self.holds[-1]
        finally:
            self.pause()

    def end_leftovers(self) -> None:
        """End every process tree a case left on the device (a cut link, a killed melt). Raises TransportError
        when one is still there after SIGKILL, or the device cannot be asked."""
        done = self.sh(spawning.LEFTOVERS, f"{self.workdir}/spawned", timeout_s=SHORT_S)
        if done.returncode not in (0, 1):
            raise TransportError(f"device {self.name}: could not look for leftovers: {done.stderr.strip()[-200:]}")
        stuck = []
        for name, reaped in spawning.parse_leftovers(done.stdout).items():
            if reaped.gone is False:
                stuck.append(name)
            elif reaped.killed:
                self.notes.append(f"ended processes left running on the device by {name.replace('--', ' case ')}")
        if stuck:
            raise TransportError(f"device {self.name}: processes of {', '.join(stuck)} survive SIGKILL there")
        self._unconfirmed = False

    def close(self) -> None:
        try:
            if self._holder is not None and self._workdir is not None:
                lock.release(self.sh, f"{self.workdir}/lock", self._holder)
        except (TransportError, MeltError):
            pass  # unreachable now: the lock is stale once this melt ends, and the next melt takes it over
        finally:
            self.t.close()

    # -- sessions by capability -----------------------------------------------------------------------
    def session(self, runtime: str):
        kind = "tools" if runtime in TOOLS_RUNTIMES else "agent"
        if kind not in self._sessions:
            self._sessions[kind] = ToolsSession(self) if kind == "tools" else AgentSession(self)
        return self._sessions[kind]

    def environment(self, runtimes: list[str], timeout_s: float = SHORT_S) -> dict:
        """The device's facts, whether each runtime can run there, and its sensors: from the agent where
        one of the runtimes needs it, and from the tools session for llama_cpp_cli."""
        agent = [r for r in runtimes if r not in TOOLS_RUNTIMES]
        tools = [r for r in runtimes if r in TOOLS_RUNTIMES]
        found: dict = {}
        if agent or not tools:
            found = self.session(agent[0] if agent else "llama_cpp").environment(agent, timeout_s)
        if tools:
            by_tools = self.session(tools[0]).environment(tools, timeout_s)
            if not found:
                found = by_tools
            else:
                found["runtimes"].update(by_tools["runtimes"])
                found.setdefault("tools", by_tools.get("facts"))
        free = self.provision.free_bytes(self.workdir)
        found.setdefault("environment", {}).update(
            workdir=self.workdir, workdir_free_mb=free / 1e6 if free is not None else None
        )
        return found

    def prepare_model(self, model: ResolvedModel, deadline: Deadline) -> str:
        return self.provision.model(model, deadline)

    def run_case(self, runtime: str, case_dir: Path, deadline: Deadline, run_id: str) -> AgentExit:
        if self._unconfirmed:
            self.end_leftovers()
        ended = self.session(runtime).run_case(case_dir, deadline, run_id)
        if ended.gone is not True:
            self._unconfirmed = True
        return ended


def reachable(profile: DeviceProfile, timeout_s: float = 15.0) -> tuple[bool, str]:
    """Whether the device answers a trivial command now, and if not, why."""
    device = Device(profile)
    try:
        device.hold()
        done = device.t.run(["true"], timeout_s)
        if done.timed_out:
            return False, f"no answer within {timeout_s:.0f} s"
        return done.returncode == 0, "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")
    except (TransportError, MeltError) as e:
        return False, str(e)
    finally:
        device.t.close()
