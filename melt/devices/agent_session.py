"""The agent session: for devices with Python, over any transport. The agent zipapp (melt.devices.agentpack)
is provisioned by content hash, each case runs in a fresh agent process spawned in its own session on the
device (melt.devices.spawning) in the case's folder there, and the folder comes back. On `local` the
case folder is the device's folder, so nothing is copied.

The agent runs under `env -i` with the allow-list and the profile's `env:`
(melt.agent.environment.sh_wrapper): the shell's OMP_*, GGML_*... reach it only when the profile passes them.
"""

from __future__ import annotations

import json
from pathlib import Path

from melt.agent.environment import sh_wrapper
from melt.deadline import CLEANUP_S, Deadline
from melt.devices import agentpack
from melt.devices.exits import AgentExit, pull_case
from melt.devices.transport import TransportError

# $1 case folder on the device, $2 python, $3 agent, $4 seconds for `timeout` (a backstop: the host ends
# the tree at the deadline itself). `exec timeout` keeps timeout in the spawned process group.
RUN = (
    'cd "$1" || exit 97; '
    "if command -v timeout >/dev/null 2>&1; "
    'then exec timeout -s KILL "$4" "$2" "$3" run "$1" > agent.log 2>&1; '
    'else exec "$2" "$3" run "$1" > agent.log 2>&1; fi'
)


class AgentSession:
    def __init__(self, device):
        self.d = device
        self.t = device.t
        self.clean_env = sh_wrapper(device.profile.spec.env)

    @property
    def python(self) -> str:
        if not self.d.python:
            raise TransportError(
                f"device {self.d.name}: no Python there to run the agent; set `python:` in its profile"
            )
        return self.d.python

    def agent_path(self, deadline: Deadline | None = None) -> str:
        return self.d.provision.file(agentpack.build(), "agents", deadline)

    def environment(self, runtimes: list[str], timeout_s: float) -> dict:
        sensors = self.d.profile.spec.sensors
        argv = [*self.clean_env, self.python, self.agent_path(), "env", *runtimes, "--root", sensors.root,
                "--sensors", sensors.model_dump_json(exclude_none=True)]  # fmt: skip
        done = self.t.run(argv, timeout_s)
        if done.timed_out or done.returncode != 0:
            said = "no answer" if done.timed_out else (done.stderr.strip()[-300:] or f"exit {done.returncode}")
            raise TransportError(
                f"device {self.d.name}: the agent did not run under {self.python} ({said}); set `python:` in the "
                "profile to a Python 3.10+ on the device. The agent starts with an allow-listed environment: a "
                "variable it needs there (LD_LIBRARY_PATH, say) goes in the profile's `env:`"
            )
        return json.loads(done.stdout)

    def run_case(self, case_dir: Path, deadline: Deadline, run_id: str) -> AgentExit:
        """Push the case's files, spawn the agent, wait until the deadline, end its tree, pull the folder."""
        agent = self.agent_path(deadline)
        remote = self.d.case_folder(run_id, case_dir)
        if not self.t.shares_files:
            for name in (
                "case.json",
                "prompts.jsonl",
                "perplexity.txt",
                "choices.jsonl",
                "outputs.jsonl",
                "kld_base.npz",
            ):
                if (case_dir / name).is_file():
                    self.t.push(case_dir / name, f"{remote}/{name}", deadline.for_step(f"push of {name}"))
        budget = deadline.for_step("the agent")
        argv = [*self.clean_env, "sh", "-c", RUN, "sh", remote, self.python, agent, str(int(budget) + 2)]
        ended = self.t.spawn(argv, self.d.spawn_state(run_id, case_dir.name)).wait(budget, CLEANUP_S)
        pull_case(self.t, remote, case_dir, ended, deadline)
        log = case_dir / "agent.log"
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else (ended.lost or "")
        return AgentExit(ended.returncode, ended.timed_out, tail, ended.lost, ended.gone)
