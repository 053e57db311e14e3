"""A phone over ADB: no Python there, so facts come from a POSIX sh script and the device's own
tools (getprop, uname, df), and runtimes are llama.cpp binaries from the profile's llama_cpp_bin."""

from __future__ import annotations

from melt.devices.profile import DeviceProfile
from melt.devices.transport import TransportError

SHORT_S = 60.0

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
kv workdir_free_kb "$(df -k "$work" 2>/dev/null | tail -n 1 | tr -s ' ' | cut -d' ' -f4)"
for tool in llama-bench llama-cli llama-completion; do
  if [ -x "$bin/$tool" ]; then kv "tool.$tool" "$bin/$tool"; fi
done
kv python "$(command -v python3 2>/dev/null)"
"""


class PhoneSession:
    def __init__(self, profile: DeviceProfile, transport):
        self.profile = profile
        self.t = transport

    def environment(self, runtimes: list[str], timeout_s: float = SHORT_S) -> dict:
        spec = self.profile.spec
        work = spec.workdir or "/data/local/tmp/melt"
        args = [spec.sensors.root.rstrip("/"), spec.llama_cpp_bin or "", work]
        done = self.t.run(["sh", "-c", FACTS, "sh", *args], timeout_s)
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
            "workdir_free_mb": _mb(facts.get("workdir_free_kb")),
            "python": facts.get("python") or None,
        }
        why_not = (
            f"no llama-bench under llama_cpp_bin {spec.llama_cpp_bin!r} on the device"
            if spec.llama_cpp_bin
            else "the profile sets no llama_cpp_bin"
        )
        runtimes_found = {
            name: {"available": False, "error": "a phone has no Python: use runtime llama_cpp_cli"}
            for name in runtimes
            if name != "llama_cpp_cli"
        }
        runtimes_found["llama_cpp_cli"] = (
            {"available": True, "tools": tools} if "llama-bench" in tools else {"available": False, "error": why_not}
        )
        return {"environment": environment, "runtimes": runtimes_found, "facts": facts}

    def close(self) -> None:
        self.t.close()


def _mb(kb: str | None) -> float | None:
    return int(kb) / 1024 if kb and kb.isdigit() else None
