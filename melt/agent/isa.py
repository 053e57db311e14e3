"""Instruction-set features: what the CPU has (/proc/cpuinfo) beside what llama.cpp was built for
(llama_print_system_info), and a warning for each feature the CPU has that the build leaves unused.

Sources:
- /proc/cpuinfo: x86 lists the kernel's names on each processor's `flags` line (arch/x86/include/asm/
  cpufeatures.h; SSE3 is "pni"); arm64 and 32-bit arm on each processor's `Features` line
  (arch/arm64/kernel/cpuinfo.c hwcap_str: asimd, asimdhp, asimddp, i8mm, sve, sme...; arch/arm/kernel/setup.c:
  neon, vfpv4...). A feature counts when every processor lists it.
- llama_print_system_info, two forms. Up to Nov 2024 (llama.cpp src/llama.cpp) one flat list of every
  feature with 0 or 1: "AVX = 1 | AVX_VNNI = 0 | AVX2 = 1 | ... | LLAMAFILE = 1 | ". Since the backend
  registry (ggml-org/llama.cpp ggml/src/ggml-cpu/ggml-cpu.cpp ggml_backend_cpu_get_features, commit
  01c20eae6 read): per backend, "CPU : SSE3 = 1 | AVX = 1 | ... | " then "CUDA : ARCHS = 890 | ... | ", only the
  features that are on (SVE_CNT carries a number). The tools print it after "system_info: n_threads = 4
  (n_threads_batch = 4) / 8 | " (common/common.cpp common_params_get_system_info). On x86 a feature is on
  when the build was compiled for it; on arm ggml also asks the CPU (so an arm build feature that is off
  may be the CPU's lack, which the comparison shows as nothing unused).
Standard library only.
"""

from __future__ import annotations

import re

# llama.cpp's build feature -> the /proc/cpuinfo names that show the CPU has it (any one suffices)
BUILD_TO_CPU = {
    "SSE3": ("pni",),
    "SSSE3": ("ssse3",),
    "AVX": ("avx",),
    "AVX_VNNI": ("avx_vnni",),
    "AVX2": ("avx2",),
    "F16C": ("f16c",),
    "FMA": ("fma",),
    "BMI2": ("bmi2",),
    "AVX512": ("avx512f",),
    "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",),
    "AVX512_BF16": ("avx512_bf16",),
    "AMX_INT8": ("amx_int8",),
    "NEON": ("asimd", "neon"),
    "ARM_FMA": ("asimd", "vfpv4"),  # AArch64 Advanced SIMD always has fused multiply-add
    "FP16_VA": ("asimdhp",),
    "DOTPROD": ("asimddp",),
    "MATMUL_INT8": ("i8mm",),
    "SVE": ("sve",),
    "SME": ("sme",),
}

# the CPU flags recorded: those above, and their relatives that say what a build could target
RELEVANT_CPU = (
    "pni", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512*", "amx*",
    "neon", "vfpv4", "asimd", "fphp", "asimdhp", "asimddp", "asimdrdm", "i8mm", "bf16", "sve", "sve2", "svei8mm",
    "svebf16", "sme", "sme2",
)  # fmt: skip

AMX_NOTE = (
    "melt's own llama.cpp build leaves AMX out on purpose (scripts/llama_cmake_args.sh: its AMX matmul "
    "crashed on Q4_K models), so this is expected there"
)

_TOKEN = re.compile(r"^([A-Za-z0-9_]+) = (\S+)$")
_BACKEND = re.compile(r"^([A-Za-z0-9_.\- ]+?) :\s*(.*)$")


def _relevant(flag: str) -> bool:
    return any(flag == p or (p.endswith("*") and flag.startswith(p[:-1])) for p in RELEVANT_CPU)


def cpu_features(cpuinfo: str) -> dict:
    """The CPU's ISA features from /proc/cpuinfo text.
    Returns {"source": "flags" | "Features" | None, "features": sorted names every processor lists that
    llama.cpp can use (RELEVANT_CPU), "uneven": relevant names only some processors list}; source None and
    empty lists when no such line was read (then nothing is compared)."""
    per_cpu: list[set[str]] = []
    source = None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            source = key.strip()
            per_cpu.append({f for f in value.split() if _relevant(f)})
    if not per_cpu:
        return {"source": None, "features": [], "uneven": []}
    common = set.intersection(*per_cpu)
    return {"source": source, "features": sorted(common), "uneven": sorted(set.union(*per_cpu) - common)}


class SystemInfoError(ValueError):
    """llama_print_system_info text from which no feature could be read."""


def parse_system_info(text: str) -> dict:
    """llama_print_system_info text (either form, with or without the tools' "system_info: ..." head).
    Returns {"form": "flat" | "per-backend", "cpu": {feature: value} ("0"/"1", SVE_CNT a number),
    "backends": {name: {feature: value}} for the other backends (per-backend form), "skipped": tokens not
    understood}. In the flat form every feature is listed, 0 or 1; in the per-backend form only those on.
    Raises SystemInfoError when no feature was read."""
    tokens = [t.strip() for t in text.strip().split("|")]
    backends: dict[str, dict[str, str]] = {}
    flat: dict[str, str] = {}
    skipped: list[str] = []
    current: str | None = None
    for token in tokens:
        if not token or token.startswith("system_info:"):
            continue  # the trailing " | ", and the tools' thread-count head
        # "CPU : AVX = 1" opens a backend; "BLAS : CPU : AVX = 1" when BLAS listed nothing
        while (m := _BACKEND.match(token)) and not _TOKEN.match(token):
            current = m.group(1).strip()
            backends.setdefault(current, {})
            token = m.group(2).strip()
        if not token:
            continue
        m = _TOKEN.match(token)
        if not m:
            skipped.append(token)
        elif current is None:
            flat[m.group(1)] = m.group(2)
        else:
            backends[current][m.group(1)] = m.group(2)
    if flat and backends:
        skipped += [f"{k} = {v}" for k, v in flat.items()]  # features before any backend: not this form
        flat = {}
    if not flat and not any(backends.values()):
        raise SystemInfoError(f"no 'NAME = value' feature in {text.strip()[:200]!r}")
    if flat:
        return {"form": "flat", "cpu": flat, "backends": {}, "skipped": skipped}
    return {
        "form": "per-backend",
        "cpu": backends.pop("CPU", {}),
        "backends": backends,
        "skipped": skipped,
    }


def compare(cpu: dict, build: dict) -> dict:
    """What the CPU has that the build does not use, and what the build uses that the CPU lacks.
    cpu: cpu_features(); build: parse_system_info(). Returns {"unused": [feature], "missing_on_cpu": [feature],
    "not_reported": [feature the CPU has that a flat-form build does not list at all], "warnings": [text]}.
    Nothing is compared when the CPU's features were not read."""
    has = set(cpu.get("features") or [])
    out: dict = {"unused": [], "missing_on_cpu": [], "not_reported": [], "warnings": []}
    if not cpu.get("source"):
        return out
    on = {k for k, v in build["cpu"].items() if v != "0"}
    for feature, flags in BUILD_TO_CPU.items():
        cpu_has = any(f in has for f in flags)
        if cpu_has and feature not in on:
            if build["form"] == "flat" and feature not in build["cpu"]:
                out["not_reported"].append(feature)
            else:
                out["unused"].append(feature)
        elif not cpu_has and feature in on:
            out["missing_on_cpu"].append(feature)
    if not build["cpu"] and build["form"] == "per-backend":
        out["warnings"].append("llama.cpp reports no CPU backend features (no CPU backend loaded?)")
        out["unused"] = []
    if out["unused"]:
        text = f"CPU has {', '.join(out['unused'])} but llama.cpp was built without it"
        if "AMX_INT8" in out["unused"]:
            text += f"; {AMX_NOTE}"
        out["warnings"].append(text)
    if out["missing_on_cpu"]:
        out["warnings"].append(
            f"llama.cpp was built for {', '.join(out['missing_on_cpu'])}, which this CPU does not list: "
            "expect an illegal-instruction crash"
        )
    return out


def summary(cpuinfo: str, system_info: str | None) -> dict:
    """The `isa` entry of the device environment: {"cpu_features", "cpu_source", "build_features" (the
    llama.cpp CPU backend's features that are on; "SVE_CNT=16" where the value is not 1), "build_form",
    "build_skipped", "unused", "missing_on_cpu", "not_reported", "warnings", "build_error"}. system_info None:
    no llama.cpp here, only the CPU side is filled."""
    cpu = cpu_features(cpuinfo)
    out = {"cpu_source": cpu["source"], "cpu_features": cpu["features"]}
    if cpu["uneven"]:
        out["cpu_features_uneven"] = cpu["uneven"]
    if system_info is None:
        return out
    try:
        build = parse_system_info(system_info)
    except SystemInfoError as e:
        return {**out, "build_error": str(e)}
    out["build_form"] = build["form"]
    out["build_features"] = [k if v == "1" else f"{k}={v}" for k, v in build["cpu"].items() if v != "0"]
    if build["skipped"]:
        out["build_skipped"] = build["skipped"]
    return {**out, **compare(cpu, build)}
