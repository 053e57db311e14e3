"""The `local` transport: the agent runs on this machine, in a fresh process per case, writing
straight into the case folder. Remote transports (SSH, ADB) add push/pull around the same steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from melt.agent.environment import agent_environ
from melt.devices.process import wait
from melt.devices.profile import DeviceProfile
from melt.errors import MeltError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding melt/, put on the agent's path


@dataclass(frozen=True)
class AgentExit:
    returncode: int | None
    timed_out: bool
    log_tail: str


class LocalSession:
    """Runs the agent under the profile's python (default: the Python running melt)."""

    def __init__(self, profile: DeviceProfile):
        self.profile = profile
        self.python = os.path.expanduser(profile.spec.python) if profile.spec.python else sys.executable

    def _env(self) -> dict:
        """Built, not inherited: the allow-list and the profile's `env` from this process's environment
        (melt.agent.environment), melt's package on PYTHONPATH, no bytecode written into the checkout."""
        env = agent_environ(os.environ, self.profile.spec.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _agent(self, *args: str) -> list[str]:
        return [self.python, "-m", "melt.agent", *args]

    def environment(self, runtimes: list[str], timeout_s: float = 60.0) -> dict:
        """Facts about the device, whether each runtime imports there, and which sensors it has
        (a fresh process)."""
        sensors = self.profile.spec.sensors
        try:
            out = subprocess.run(
                self._agent(
                    "env", *runtimes, "--root", sensors.root, "--sensors", sensors.model_dump_json(exclude_none=True)
                ),
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=timeout_s,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MeltError(f"device {self.profile.name}: the agent did not start under {self.python}: {e}") from None
        if out.returncode != 0:
            raise MeltError(
                f"device {self.profile.name}: the agent failed under {self.python}: {out.stderr.strip()[-500:]}"
            )
        return json.loads(out.stdout)

    def prepare_model(self, model) -> str:
        return str(model.path)

    def close(self) -> None:
        pass

    def run_case(self, case_dir: Path, timeout_s: float, run_id: str = "") -> AgentExit:
        """Run one case in a fresh process; its output goes to case_dir/agent.log."""
        case_dir = Path(case_dir).resolve()
        log_path = case_dir / "agent.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                self._agent("run", str(case_dir)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                cwd=case_dir,
                start_new_session=True,  # its own process group, so a deadline kills all of it
            )
            finished = wait(proc, timeout_s)
        tail = log_path.read_text(errors="replace")[-2000:]
        return AgentExit(finished.returncode, finished.timed_out, tail)


def open_session(profile: DeviceProfile):
    """A session on the device: local, or remote through its transport."""
    kind = profile.spec.transport.kind
    if kind == "local":
        return LocalSession(profile)
    if kind == "ssh":
        from melt.devices.remote import RemoteSession
        from melt.devices.transport import SshTransport

        return RemoteSession(profile, SshTransport(profile.spec.transport))
    if kind == "adb":
        from melt.devices.phone import PhoneSession
        from melt.devices.transport import AdbTransport

        return PhoneSession(profile, AdbTransport(profile.spec.transport))
    raise MeltError(f"device {profile.name}: transport {kind!r} is not supported by this version of melt")


def reachable(profile: DeviceProfile, timeout_s: float = 15.0) -> tuple[bool, str]:
    """Whether the device answers a trivial command now, and if not, why."""
    from melt.devices.transport import TransportError

    session = open_session(profile)
    try:
        if isinstance(session, LocalSession):
            return True, ""
        done = session.t.run(["true"], timeout_s)
        if done.timed_out:
            return False, f"no answer within {timeout_s:.0f} s"
        return done.returncode == 0, "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")
    except (TransportError, MeltError) as e:
        return False, str(e)
    finally:
        session.close()
