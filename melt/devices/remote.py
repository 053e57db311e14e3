"""A device reached over a transport (SSH): the agent zipapp and models are provisioned into the
profile's workdir by content hash, each case runs there in a fresh agent process, and its folder
is pulled back. Nothing is sent twice: an unchanged model costs one remote `test -f`. The agent runs under
`env -i` with the allow-list and the profile's `env:` (melt.agent.environment.sh_wrapper), never with the
login shell's whole environment."""

from __future__ import annotations

import json
import time
from pathlib import Path

from melt.agent.environment import sh_wrapper
from melt.devices import agentpack
from melt.devices.local import AgentExit
from melt.devices.profile import DeviceProfile
from melt.devices.transport import TransportError
from melt.sources import ResolvedModel

SHORT_S = 60.0
COPY_S = 3600.0


class RemoteSession:
    def __init__(self, profile: DeviceProfile, transport):
        self.profile = profile
        self.t = transport
        self.python = profile.spec.python or "python3"
        self._workdir: str | None = None
        self._agent: str | None = None
        self._models: dict[str, str] = {}
        # the agent runs under `env -i`: the login shell's OMP_*, GGML_*... reach it only when the profile passes them
        self._clean_env = sh_wrapper(profile.spec.env)

    @property
    def workdir(self) -> str:
        if self._workdir is None:
            wanted = self.profile.spec.workdir or "~/.melt"
            if wanted.startswith("~"):
                home = self._sh('printf %s "$HOME"').stdout.strip()
                wanted = home + wanted[1:]
            self._sh('mkdir -p "$1/agents" "$1/models" "$1/runs"', wanted)
            self._workdir = wanted
        return self._workdir

    def _sh(self, script: str, *args: str, timeout_s: float = SHORT_S):
        """A POSIX sh script with its arguments passed as $1.. (never pasted into the script)."""
        done = self.t.run(["sh", "-c", script, "sh", *args], timeout_s)
        if done.timed_out:
            raise TransportError(f"device {self.profile.name}: no answer within {timeout_s} s")
        return done

    def agent_path(self) -> str:
        if self._agent is None:
            local = agentpack.build()
            remote = f"{self.workdir}/agents/{local.name}"
            if self._sh('test -f "$1"', remote).returncode != 0:
                self.t.push(local, remote + ".part", COPY_S)
                self._sh('mv "$1.part" "$1"', remote)
            self._agent = remote
        return self._agent

    def environment(self, runtimes: list[str], timeout_s: float = SHORT_S) -> dict:
        sensors = self.profile.spec.sensors
        argv = [*self._clean_env, self.python, self.agent_path(), "env", *runtimes, "--root", sensors.root,
                "--sensors", sensors.model_dump_json(exclude_none=True)]  # fmt: skip
        done = self.t.run(argv, timeout_s)
        if done.returncode != 0:
            raise TransportError(
                f"device {self.profile.name}: the agent did not run under {self.python} "
                f"({done.stderr.strip()[-300:] or 'exit ' + str(done.returncode)}); set `python:` in the profile "
                "to a Python 3.10+ on the device. The agent starts with an allow-listed environment: a variable "
                "it needs there (LD_LIBRARY_PATH, say) goes in the profile's `env:`"
            )
        env = json.loads(done.stdout)
        env["environment"]["workdir"] = self.workdir
        free = self._free_bytes()
        env["environment"]["workdir_free_mb"] = free / 1e6 if free is not None else None
        return env

    def _free_bytes(self) -> int | None:
        done = self._sh('df -Pk "$1" | tail -n 1', self.workdir)
        try:
            return int(done.stdout.split()[3]) * 1024
        except (IndexError, ValueError):
            return None

    def prepare_model(self, model: ResolvedModel) -> str:
        """The model's path on the device: pushed once, verified there, then found by its hash."""
        if model.sha256 in self._models:
            return self._models[model.sha256]
        remote = f"{self.workdir}/models/{model.sha256}/{model.path.name}"
        if self._sh('test -f "$1.verified"', remote).returncode != 0:
            self._check_space(model.size_bytes)
            self._sh('mkdir -p "$(dirname "$1")"', remote)
            self.t.push(model.path, remote, COPY_S)  # rsync --partial: an interrupted push resumes
            verify = (
                "import hashlib,sys\nh=hashlib.sha256()\nf=open(sys.argv[1],'rb')\n"
                "for b in iter(lambda: f.read(1<<20), b''): h.update(b)\nprint(h.hexdigest())"
            )
            got = self.t.run([self.python, "-c", verify, remote], COPY_S).stdout.strip()
            if got != model.sha256:
                raise TransportError(
                    f"device {self.profile.name}: {remote} has sha256 {got or '?'}, expected {model.sha256}"
                )
            self._sh(': > "$1.verified"', remote)
        self._models[model.sha256] = remote
        return remote

    def _check_space(self, need_bytes: int) -> None:
        free = self._free_bytes()
        if free is not None and free < need_bytes:  # df says nothing usable: let the copy tell
            short_mb = (need_bytes - free) / 1e6
            raise TransportError(
                f"device {self.profile.name}: {self.workdir} has {free / 1e6:.0f} MB free, the model needs "
                f"{need_bytes / 1e6:.0f} MB ({short_mb:.0f} MB short); free space or move workdir"
            )

    def run_case(self, case_dir: Path, timeout_s: float, run_id: str) -> AgentExit:
        remote = f"{self.workdir}/runs/{run_id}/{case_dir.name}"
        self._sh('rm -rf "$1" && mkdir -p "$1"', remote)
        for name in ("case.json", "prompts.jsonl"):
            if (case_dir / name).is_file():
                self.t.push(case_dir / name, f"{remote}/{name}", COPY_S)
        script = (
            'cd "$1" || exit 97; '
            "if command -v timeout >/dev/null 2>&1; "
            'then exec timeout -s KILL "$4" "$2" "$3" run "$1" > agent.log 2>&1; '
            'else exec "$2" "$3" run "$1" > agent.log 2>&1; fi'
        )
        argv = [
            *self._clean_env,
            "sh",
            "-c",
            script,
            "sh",
            remote,
            self.python,
            self.agent_path(),
            str(int(timeout_s) + 1),
        ]
        started = time.monotonic()
        done = self.t.run(argv, timeout_s + 30)
        elapsed = time.monotonic() - started
        try:
            self.t.pull_dir(remote, case_dir, COPY_S)
        except TransportError:
            if done.returncode is not None:
                raise
        log = case_dir / "agent.log"
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else done.stderr[-2000:]
        timed_out = done.timed_out or (done.returncode == 137 and elapsed >= timeout_s)  # killed by `timeout`
        return AgentExit(done.returncode, timed_out, tail)

    def close(self) -> None:
        self.t.close()
