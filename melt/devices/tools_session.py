"""The tools session: llama.cpp's own tools (llama-bench, llama-completion) from the profile's llama_cpp_bin,
driven by a POSIX sh script with the sh sampler beside them, for devices without Python (phones, minimal
Linux images) or wherever a recipe asks for runtime llama_cpp_cli; over any transport. Facts come from a
sh script and the device's own tools (getprop where there is one, uname, df).

Every command melt runs there starts with llama_cpp_cli.SH_ENV (LC_ALL=C): the device's locale must not
change how its tools print numbers. How each llama.cpp binary takes -fa is read once a session from
its own --help (llama_cpp_cli_output.flash_attn_form).

The llama.cpp tools run under `env -i` with the allow-list and the profile's `env:`
(melt.agent.environment.sh_wrapper; toybox env takes -i): the adb shell's OMP_*, GGML_*, LD_LIBRARY_PATH...
reach them only when passed. The environment they ran in is written by the device script (environ.txt) and
recorded in agent.json as a local agent records its own; the probe records the same from an `env` run
under the same wrapper, and the CPU's ISA features (/proc/cpuinfo)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from melt.agent import environment as agent_env
from melt.agent import isa
from melt.deadline import CLEANUP_S, Deadline
from melt.devices.exits import AgentExit, pull_case
from melt.devices.provision import content_name
from melt.devices.transport import TransportError
from melt.runtimes import llama_cpp_cli
from melt.runtimes import llama_cpp_cli_quality as cli_quality
from melt.runtimes.llama_cpp_cli_output import FlashAttnUnsupported, flash_attn_args, flash_attn_form
from melt.telemetry import sh_trace as sampler_sh

SHORT_S = 60.0
STEP = "the llama.cpp tools"  # what a case's deadline or lost link interrupted
# first lines of a case's device script (after SH_ENV, so LC_ALL=C is in it): the environment the tools get
ENV_DUMP = 'env > "$1/environ.txt" 2>/dev/null\n'
BUILD_UNKNOWN = (
    "llama-bench does not print llama.cpp's system info: a case run with llama-completion (prompts) records "
    "the build's features in its agent.json"
)

FACTS = r"""
root=$1; bin=$2; work=$3
mkdir -p "$work" 2>/dev/null
kv() { printf '%s\t%s\n' "$1" "$2"; }
kv kernel "$(uname -r 2>/dev/null)"
kv machine "$(uname -m 2>/dev/null)"
kv model "$(getprop ro.product.model 2>/dev/null)"
kv android "$(getprop ro.build.version.release 2>/dev/null)"
kv soc "$(getprop ro.soc.model 2>/dev/null)"
kv cpu_count "$(grep -c '^processor' "$root/proc/cpuinfo" 2>/dev/null)"
kv cpu_model "$(grep -m1 -E '^(Hardware|model name)' "$root/proc/cpuinfo" 2>/dev/null | cut -d: -f2-)"
kv mem_total_kb "$(grep -m1 '^MemTotal:' "$root/proc/meminfo" 2>/dev/null | tr -s ' ' | cut -d' ' -f2)"
for tool in llama-bench llama-cli llama-completion; do
  if [ -x "$bin/$tool" ]; then kv "tool.$tool" "$bin/$tool"; fi
done
kv python "$(command -v python3 2>/dev/null)"
"""


class ToolsSession:
    def __init__(self, device):
        self.d = device
        self.profile = device.profile
        self.t = device.t
        self._help: dict[str, str] = {}  # tool path -> its --help text, asked once a session
        self._clean_env = agent_env.sh_wrapper(device.profile.spec.env)
        self._cpuinfo: str | None = None

    def environment(self, runtimes: list[str], timeout_s: float = SHORT_S) -> dict:
        spec = self.profile.spec
        args = [spec.sensors.root.rstrip("/"), spec.llama_cpp_bin or "", self.d.workdir]
        done = self.t.run(["sh", "-c", llama_cpp_cli.SH_ENV + FACTS, "sh", *args], timeout_s)
        if done.timed_out or done.returncode != 0:
            raise TransportError(f"device {self.profile.name}: the facts script failed: {done.stderr.strip()[-300:]}")
        facts = dict(line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
        tools = {k.split(".", 1)[1]: v for k, v in facts.items() if k.startswith("tool.")}
        environment = {
            "system": "Android" if facts.get("android") else "Linux",
            "android": facts.get("android") or None,
            "model": facts.get("model") or None,
            "soc": facts.get("soc") or None,
            "kernel": facts.get("kernel") or None,
            "machine": facts.get("machine") or None,
            "cpu_model": (facts.get("cpu_model") or "").strip() or None,
            "cpu_count": int(facts["cpu_count"]) if facts.get("cpu_count", "").isdigit() else None,
            "mem_total_mb": _mb(facts.get("mem_total_kb")),
            "python": facts.get("python") or None,
        }
        listing = self.t.run([*self._clean_env, "env"], timeout_s)
        if listing.returncode != 0:
            raise TransportError(
                f"device {self.profile.name}: `env -i` did not run in the adb shell: {listing.stderr.strip()[-300:]}"
            )
        environment.update(agent_env.record(agent_env.parse_env_listing(listing.stdout)))
        environment["isa"] = {**isa.summary(self._read_cpuinfo(), None), "build_unknown": BUILD_UNKNOWN}
        why_not = (
            f"no llama-bench under llama_cpp_bin {spec.llama_cpp_bin!r} on the device"
            if spec.llama_cpp_bin
            else "the profile sets no llama_cpp_bin"
        )
        runtimes_found = {
            "llama_cpp_cli": {"available": True, "tools": tools}
            if "llama-bench" in tools
            else {"available": False, "error": why_not}
        }
        return {"environment": environment, "runtimes": runtimes_found, "facts": facts, "sensors": self._sensors()}

    def _sensors(self) -> dict:
        """What the sh sampler finds: run it for half a second on the phone and read what it wrote."""
        remote = f"{self.workdir}/probe"
        script = (
            'rm -rf "$1" && mkdir -p "$1" && { sh "$2" "$1" 100 "$3" & p=$!; sleep 0.5; kill $p; wait $p; } 2>/dev/null'
        )
        self._sh(script, remote, self._sampler(), self.profile.spec.sensors.root)
        with tempfile.TemporaryDirectory(prefix="melt-probe-") as tmp:
            local = Path(tmp)
            self.t.pull_dir(remote, local, SHORT_S)
            if not (local / "trace.raw.csv").is_file():
                return {"power_method": "none", "probes": {"sh_sampler": {"missing": ["the sh sampler wrote nothing"]}}}
            battery = self.profile.spec.sensors.battery
            return sampler_sh.convert(
                local / "trace.raw.csv", local / "sampler.json", local / "trace.csv",
                battery.model_dump(exclude_none=True) if battery else None,
            )  # fmt: skip

    def _read_cpuinfo(self) -> str:
        """The phone's /proc/cpuinfo (under the sensors root), read once a session."""
        if self._cpuinfo is None:
            root = self.profile.spec.sensors.root.rstrip("/")
            self._cpuinfo = self._sh('cat "$1/proc/cpuinfo" 2>/dev/null', root).stdout
        return self._cpuinfo

    @property
    def workdir(self) -> str:
        return self.d.workdir

    def _sh(self, script: str, *args: str, timeout_s: float = SHORT_S):
        return self.d.sh(script, *args, timeout_s=timeout_s)

    def _sampler(self, deadline: Deadline | None = None) -> str:
        local = Path(sampler_sh.__file__).with_name("sampler.sh")
        return self.d.provision.file(local, "agents", deadline, name=content_name(local, "sampler"))

    def _flash_attn(self, tool: str, asked: str) -> dict:
        """How to ask `tool` (a path on the phone) for flash attention on, off or auto, from its --help (asked
        once a session): {"asked", "form", "help_line", "args", "log_args"}; args: the -fa spelling (none for
        auto: the tool's own default); log_args: what makes it log how auto resolved
        (llama_cpp_cli.resolution_log_args). Raises FlashAttnUnsupported (with the tool named) when its help
        does not say how, or the build has none and it is asked for."""
        if tool not in self._help:
            self._help[tool] = self._sh('"$1" --help 2>&1', tool).stdout
        try:
            form = flash_attn_form(self._help[tool])
            args = flash_attn_args(form, asked)
        except FlashAttnUnsupported as e:
            raise FlashAttnUnsupported(f"{tool}: {e}") from None
        fa = {"asked": asked, "form": form["form"], "help_line": form["line"], "args": args}
        fa["log_args"] = llama_cpp_cli.resolution_log_args(Path(tool).name, fa)
        return fa

    def run_case(self, case_dir: Path, deadline: Deadline, run_id: str) -> AgentExit:
        """Spawn the driver script (melt.devices.spawning) in the case's folder on the device, wait until the
        deadline, end its tree, pull the folder, and turn the tools' output into melt's files."""
        case = json.loads((case_dir / "case.json").read_text())
        real_prompts = "prompts" in case["workload"]  # one llama-completion run per trial, else llama-bench
        tool = f"{self.profile.spec.llama_cpp_bin}/{'llama-completion' if real_prompts else 'llama-bench'}"
        try:
            fa = self._flash_attn(tool, llama_cpp_cli.flash_attn_asked(case["params"]))
        except FlashAttnUnsupported as e:
            agent = {"status": "failed", "runtime": llama_cpp_cli.runtime_info(Path(tool).name, None), "error": str(e)}
            (case_dir / "agent.json").write_text(json.dumps(agent, indent=2))
            return AgentExit(3, False, str(e))
        shared = self.t.shares_files
        remote = self.d.case_folder(run_id, case_dir)
        telemetry = case.get("telemetry") or {}
        args = [
            remote, self._sampler(deadline), str(telemetry.get("interval_ms", 0)), self.profile.spec.sensors.root,
            str(telemetry.get("idle_s", 0)), str(case["protocol"].get("cooldown_s", 0)),
        ]  # fmt: skip
        bin_dir = self.profile.spec.llama_cpp_bin
        if real_prompts:
            prompts = [
                json.loads(line)["prompt"]
                for line in (case_dir / "prompts.jsonl").read_text().splitlines()
                if line.strip()
            ]
            self._sh('mkdir -p "$1/prompts"', remote)
            for k, text in enumerate(prompts):
                local = case_dir / "prompts" / f"p{k}.txt"
                local.parent.mkdir(exist_ok=True)
                local.write_text(text)
                if not shared:
                    self.t.push(local, f"{remote}/prompts/p{k}.txt", deadline.for_step("push of the prompts"))
            script = llama_cpp_cli.completion_script(case, bin_dir, case["model_path"], len(prompts), fa["args"])
        else:
            prefill, decode = llama_cpp_cli.commands(case, tool, case["model_path"], fa["args"] + fa["log_args"])
            script, args = llama_cpp_cli.DRIVER, [*args, prefill, decode]
        # quality (recipe `quality`): the device's llama-perplexity after the speed runs, in the same script
        quality = cli_quality.script_lines(
            case, bin_dir, case["model_path"], llama_cpp_cli.tool_flags(case["params"], fa["args"])
        )
        script = llama_cpp_cli.SH_ENV + ENV_DUMP + script.replace(cli_quality.MARK, quality)
        if quality and (case_dir / cli_quality.CHOICES_FILE).is_file() and (case.get("quality") or {}).get("choices"):
            limit = case["quality"]["choices"].get("limit")
            facts = cli_quality.write_tasks(
                case_dir / cli_quality.CHOICES_FILE, case_dir / cli_quality.TASKS_FILE, limit
            )
            (case_dir / "choices.json").write_text(json.dumps(facts))
        for name in (
            (cli_quality.TEXT_FILE, cli_quality.BASE_FILE, cli_quality.TASKS_FILE) if quality and not shared else ()
        ):
            if (case_dir / name).is_file():
                self.t.push(case_dir / name, f"{remote}/{name}", deadline.for_step(f"push of {name}"))
        budget = deadline.for_step(STEP)
        argv = [*self._clean_env, "sh", "-c", script, "sh", *args]
        ended = self.t.spawn(argv, self.d.spawn_state(run_id, case_dir.name)).wait(budget, CLEANUP_S)
        pulled = pull_case(self.t, remote, case_dir, ended, deadline)
        if (
            quality and pulled and not shared
        ):  # here now: the device keeps no copy of a base file (GBs for big vocabularies)
            self._sh('cd "$1" && rm -f ' + " ".join(cli_quality.DEVICE_ONLY_WHILE_RUNNING), remote)
        if ended.timed_out or ended.lost:
            tail = _tools_log(case_dir)[-2000:] if pulled else ""
            return AgentExit(None, ended.timed_out, tail or (ended.lost or ""), ended.lost, ended.gone, STEP)
        battery = self.profile.spec.sensors.battery
        pins = battery.model_dump(exclude_none=True) if battery else None
        if real_prompts:
            agent = llama_cpp_cli.collect_completion(case_dir, case, pins, fa)
        else:
            agent = llama_cpp_cli.collect(case_dir, pins, fa)
        if quality:
            agent["quality"] = cli_quality.collect(case_dir, case)
        agent["environment"] = self._tools_environment(case_dir)
        (case_dir / "agent.json").write_text(json.dumps(agent, indent=2))
        log = _tools_log(case_dir)
        (case_dir / "agent.log").write_text(log)
        rc = 0 if agent["status"] == "ok" else (ended.returncode or 3)
        return AgentExit(rc, False, log[-2000:], None, ended.gone, STEP)

    def _tools_environment(self, case_dir: Path) -> dict:
        """agent.json's environment for a phone case: the variables the llama.cpp tools ran with (environ.txt,
        agent_env.record), and the build's ISA features where a llama-completion log printed its system_info."""
        listing = case_dir / "environ.txt"
        if not listing.is_file():
            found: dict = {"controlled": None, "error": "the device script wrote no environ.txt"}
        else:
            found = agent_env.record(agent_env.parse_env_listing(listing.read_text(errors="replace")))
        system_info = None
        for log in sorted(case_dir.glob("trial_*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if "system_info:" in line:
                    system_info = line[line.index("system_info:") :]
                    break
            if system_info:
                break
        found["isa"] = isa.summary(self._read_cpuinfo(), system_info)
        if system_info is None:
            found["isa"]["build_unknown"] = BUILD_UNKNOWN
        return found

    def close(self) -> None:
        self.t.close()


def _tools_log(case_dir: Path) -> str:
    """The last 1000 characters of each log the tools wrote into the case folder, in name order."""
    return "\n".join(p.read_text(errors="replace")[-1000:] for p in sorted(case_dir.glob("*.log")))


def _mb(kb: str | None) -> float | None:
    return int(kb) / 1024 if kb and kb.isdigit() else None
