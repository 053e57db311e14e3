"""Memory bandwidth of a device, measured there (`melt devices probe --bandwidth`, recipe `telemetry.bandwidth`).

Which way, by capability:
1. the agent (the device has Python and numpy): `python -m melt.agent bandwidth` (melt.agent.bandwidth);
2. else melt's C helper (melt/agent/membw.c), built here from source with this machine's C compiler and
   pushed by content hash, where the device's architecture (uname -m) is this machine's: no downloaded or
   prebuilt binaries, and nothing built for a machine it cannot be tested on;
3. else nothing is measured: the figures stay empty with the reasons, and the roofline falls back on the
   profile's `limits.mem_bandwidth_gbs` (a datasheet figure), saying so.

The record (run.json devices.<name>.bandwidth; `melt devices probe --bandwidth --json`):
{"mem_bw_read_gbs", "mem_bw_copy_gbs", "read_median_gbs", "copy_median_gbs", "read_s", "copy_s",
 "method": {...} (melt.agent.bandwidth.method), "datasheet_gbs": the profile's figure or None,
 "attempts": [why each way before the one that measured did not]}; where nothing measured, the figures are
None and "why" says what was tried.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from melt.agent import bandwidth as agent_bw
from melt.devices.transport import TransportError
from melt.errors import MeltError
from melt.sources import cache_dir

TIMEOUT_S = 300.0
HELPER_SOURCE = Path(agent_bw.__file__).with_name("membw.c")
FIGURES = ("mem_bw_read_gbs", "mem_bw_copy_gbs", "read_median_gbs", "copy_median_gbs")

# the facts the helper's sizing needs, read by sh on the device (what melt.agent.bandwidth reads in Python)
FACTS = r"""
for d in /sys/devices/system/cpu/cpu[0-9]*/cache/index[0-9]*; do
  [ -d "$d" ] || continue
  printf 'cache\t%s\t%s\t%s\t%s\n' "$(cat "$d/level" 2>/dev/null)" "$(cat "$d/type" 2>/dev/null)" \
    "$(cat "$d/size" 2>/dev/null)" "$(cat "$d/shared_cpu_list" 2>/dev/null)"
done
printf 'machine\t%s\n' "$(uname -m)"
printf 'threads\t%s\n' "$(nproc 2>/dev/null || grep -c '^processor' /proc/cpuinfo)"
grep -m1 '^MemAvailable:' /proc/meminfo | tr -s ' ' | cut -d' ' -f2 | sed 's/^/memavail_kb\t/'
"""
RUN_HELPER = 'chmod +x "$1" && exec "$@"'


class HelperUnavailable(MeltError):
    """The C helper cannot be built here or cannot run on the device (the reason says which)."""


def build_helper(machine: str | None = None) -> Path:
    """melt-membw built from melt/agent/membw.c with this machine's C compiler ($CC, else cc), static where
    the C library allows it, cached by the source's hash. Raises HelperUnavailable: no compiler, a failed
    build, or a device `machine` that is not this one's architecture."""
    here = platform.machine()
    if machine and machine != here:
        raise HelperUnavailable(f"the C helper is built here for {here}; the device is {machine} (no cross compiler)")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise HelperUnavailable("no C compiler here (cc) to build the helper")
    source = HELPER_SOURCE.read_bytes()
    digest = hashlib.sha256(source + here.encode()).hexdigest()[:16]
    out = cache_dir() / "helpers" / f"melt-membw-{here}-{digest}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    errors = []
    for extra in (["-static"], []):  # static: no dependence on the device's C library version
        done = subprocess.run([cc, "-O3", "-pthread", *extra, "-o", str(tmp), str(HELPER_SOURCE)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if done.returncode == 0:
            tmp.replace(out)
            return out
        errors.append(done.stderr.strip()[-300:])
    raise HelperUnavailable(f"{cc} could not build {HELPER_SOURCE.name}: {errors[-1]}")


def parse_facts(text: str) -> dict:
    """FACTS' output: {"llc": melt.agent.bandwidth.llc_of(...), "machine", "threads", "mem_available"}."""
    entries, facts = [], {}
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "cache" and len(parts) == 5:
            entries.append(tuple(parts[1:]))
        elif len(parts) == 2:
            facts[parts[0]] = parts[1].strip()
    threads = facts.get("threads", "")
    kb = facts.get("memavail_kb", "")
    return {
        "llc": agent_bw.llc_of(entries),
        "machine": facts.get("machine") or None,
        "threads": int(threads) if threads.isdigit() and int(threads) > 0 else 1,
        "mem_available": int(kb) * 1024 if kb.isdigit() else None,
    }


def _by_agent(device, timeout_s: float) -> dict:
    session = device.session("llama_cpp")  # the agent session (any agent runtime)
    done = device.t.run([*session.clean_env, session.python, session.agent_path(), "bandwidth"], timeout_s)
    if done.timed_out:
        return {"error": f"the agent's bandwidth test gave no answer within {timeout_s:g} s"}
    if done.returncode != 0:
        return {"error": f"the agent's bandwidth test failed: {done.stderr.strip()[-300:] or done.returncode}"}
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": f"the agent's bandwidth test printed no JSON: {done.stdout.strip()[-300:]!r}"}


def _by_helper(device, timeout_s: float, reps: int) -> dict:
    found = device.sh(FACTS, timeout_s=60)
    facts = parse_facts(found.stdout)
    helper = build_helper(facts["machine"])
    remote = device.provision.file(helper, "agents")
    sizing = agent_bw.plan(facts["llc"], facts["mem_available"])
    argv = ["sh", "-c", RUN_HELPER, "sh", remote, str(facts["threads"]), str(sizing["bytes_per_array"]), str(reps)]
    done = device.t.run(argv, timeout_s)
    if done.timed_out or done.returncode != 0:
        said = "no answer" if done.timed_out else (done.stderr.strip()[-300:] or f"exit {done.returncode}")
        raise HelperUnavailable(f"the C helper did not run on the device: {said}")
    try:
        raw = json.loads(done.stdout)
    except ValueError:
        raise HelperUnavailable(f"the C helper printed no JSON: {done.stdout.strip()[-300:]!r}") from None
    sizing["bytes_per_array"] = raw["bytes_per_array"]  # rounded to whole lines per thread by the helper
    tool = f"C helper melt/agent/membw.c (built here, {helper.name})"
    return {
        **agent_bw.rates(raw["read_s"], raw["copy_s"], raw["bytes_per_array"]),
        "method": agent_bw.method(tool, raw["threads"], sizing, reps, agent_bw.C_READ),
    }


def measure(device, timeout_s: float = TIMEOUT_S, reps: int = agent_bw.REPS) -> dict:
    """The device's memory bandwidth record (module docstring). Never raises for a device that cannot be
    measured: the record says why. Raises TransportError only where the device cannot be reached."""
    attempts: list[str] = []
    datasheet = device.profile.spec.limits.mem_bandwidth_gbs
    if device.python:
        result = _by_agent(device, timeout_s)
        if "error" not in result:
            return {**result, "datasheet_gbs": datasheet, "attempts": attempts}
        attempts.append(f"agent: {result['error']}")
    else:
        attempts.append("agent: the device has no Python (profile python:)")
    try:
        return {**_by_helper(device, timeout_s, reps), "datasheet_gbs": datasheet, "attempts": attempts}
    except (HelperUnavailable, ValueError, KeyError) as e:
        attempts.append(f"C helper: {e}")
    except TransportError:
        raise
    why = "not measured: " + "; ".join(attempts)
    if datasheet:
        why += f"; the roofline uses the profile's limits.mem_bandwidth_gbs ({datasheet:g} GB/s, a datasheet figure)"
    return {**dict.fromkeys(FIGURES), "method": None, "datasheet_gbs": datasheet, "attempts": attempts, "why": why}
