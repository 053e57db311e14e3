"""ISA features: /proc/cpuinfo as each kernel writes it (x86 `flags`, arm64 and arm `Features`), llama.cpp's
llama_print_system_info in both its forms (flat until Nov 2024, per backend since; with and without the
tools' "system_info: n_threads" head), generated; and the comparison that warns on features left unused."""

from __future__ import annotations

import random

import pytest

from melt.agent import isa

# --- /proc/cpuinfo, as the kernels write it ------------------------------------------------------

SM8150_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
SAPPHIRE_RAPIDS_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht "
    "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid pni pclmulqdq ssse3 fma "
    "cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm bmi1 avx2 smep "
    "bmi2 erms avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl "
    "xsaveopt xsavec avx_vnni avx512_bf16 avx512vbmi umip pku avx512_vbmi2 gfni vaes avx512_vnni avx512_bitalg "
    "avx512_vpopcntdq amx_bf16 avx512_fp16 amx_tile amx_int8"
)
HASWELL_FLAGS = "fpu sse sse2 pni ssse3 fma cx16 sse4_1 sse4_2 popcnt avx f16c bmi1 avx2 bmi2"


def x86_cpuinfo(flags: str, cpus: int = 2, vmx: bool = True) -> str:
    """arch/x86/kernel/cpu/proc.c show_cpuinfo: one block per processor; `vmx flags` since Linux 5.9."""
    out = []
    for n in range(cpus):
        out.append(
            f"processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
            f"model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 8\ncpu MHz\t\t: 2100.000\n"
            f"fpu\t\t: yes\nflags\t\t: {flags}\n"
            + ("vmx flags\t: vnmi preemption_timer avx512_fake invvpid\n" if vmx else "")
            + "bugs\t\t: spectre_v1 spectre_v2\nbogomips\t: 4200.00\n\n"
        )
    return "".join(out)


def arm64_cpuinfo(features: str | list[str], cpus: int = 4) -> str:
    """arch/arm64/kernel/cpuinfo.c c_show: per processor, Features then the CPU id lines. features: one string
    for every core, or one per core (big.LITTLE with uneven features)."""
    per = features if isinstance(features, list) else [features] * cpus
    return "".join(
        f"processor\t: {n}\nBogoMIPS\t: 38.40\nFeatures\t: {f}\nCPU implementer\t: 0x51\n"
        f"CPU architecture: 8\nCPU variant\t: 0xd\nCPU part\t: 0x805\nCPU revision\t: 14\n\n"
        for n, f in enumerate(per)
    )


def arm64_old_cpuinfo(features: str, cpus: int = 4) -> str:
    """arm64 kernels before 3.19 (and some Android 3.x/4.x ones): one Features line for the machine."""
    cores = "".join(f"processor\t: {n}\n" for n in range(cpus))
    return (
        f"Processor\t: AArch64 Processor rev 4 (aarch64)\n{cores}Features\t: {features}\n"
        "CPU implementer\t: 0x41\nCPU architecture: AArch64\n\nHardware\t: Qualcomm MSM8996\n"
    )


def arm32_cpuinfo(features: str, cpus: int = 4) -> str:
    """arch/arm/kernel/setup.c c_show (and arm64's compat view for 32-bit readers)."""
    blocks = "".join(
        f"processor\t: {n}\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\n"
        f"Features\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 7\n\n"
        for n in range(cpus)
    )
    return blocks + "Hardware\t: BCM2835\nRevision\t: c03111\n"


CPUINFO_FORMS = [
    ("x86 sapphire rapids", x86_cpuinfo(SAPPHIRE_RAPIDS_FLAGS), "flags", SAPPHIRE_RAPIDS_FLAGS),
    ("x86 before vmx flags", x86_cpuinfo(HASWELL_FLAGS, vmx=False), "flags", HASWELL_FLAGS),
    ("x86 one cpu", x86_cpuinfo(HASWELL_FLAGS, cpus=1), "flags", HASWELL_FLAGS),
    ("arm64 sm8150", arm64_cpuinfo(SM8150_FEATURES), "Features", SM8150_FEATURES),
    ("arm64 sve i8mm", arm64_cpuinfo(SM8150_FEATURES + " i8mm bf16 sve sve2 svei8mm sme"), "Features",
     SM8150_FEATURES + " i8mm bf16 sve sve2 svei8mm sme"),
    ("arm64 old single line", arm64_old_cpuinfo("fp asimd evtstrm aes crc32"), "Features",
     "fp asimd evtstrm aes crc32"),
    ("arm32 pi", arm32_cpuinfo("half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae crc32"),
     "Features", "half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae crc32"),
]  # fmt: skip


@pytest.mark.parametrize("label,text,source,flags", CPUINFO_FORMS, ids=[f[0] for f in CPUINFO_FORMS])
def test_cpu_features_from_each_kernel_form(label, text, source, flags):
    got = isa.cpu_features(text)
    assert got["source"] == source and got["uneven"] == []
    assert got["features"] == sorted(f for f in flags.split() if isa._relevant(f))
    assert got["features"]  # every form here has some feature llama.cpp can use
    assert "vnmi" not in got["features"] and "avx512_fake" not in got["features"]  # `vmx flags` is not `flags`


def test_big_little_counts_what_every_core_has():
    little, big = SM8150_FEATURES, SM8150_FEATURES + " i8mm sve"
    got = isa.cpu_features(arm64_cpuinfo([little, little, big, big]))
    assert "i8mm" not in got["features"] and got["uneven"] == ["i8mm", "sve"] and "asimddp" in got["features"]


@pytest.mark.parametrize("text", ["", "processor\t: 0\nmodel name\t: x\n\n", "garbage"])
def test_no_feature_line_reads_nothing(text):
    assert isa.cpu_features(text) == {"source": None, "features": [], "uneven": []}


# --- llama_print_system_info, generated in each form -----------------------------------------------

# the flat form's feature lists over time (llama.cpp src/llama.cpp llama_print_system_info)
FLAT_2023 = ["AVX", "AVX2", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "FMA", "NEON", "ARM_FMA", "F16C", "FP16_VA",
             "WASM_SIMD", "BLAS", "SSE3", "SSSE3", "VSX"]  # fmt: skip
FLAT_2024 = ["AVX", "AVX_VNNI", "AVX2", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "FMA", "NEON", "SVE",
             "ARM_FMA", "F16C", "FP16_VA", "RISCV_VECT", "WASM_SIMD", "BLAS", "SSE3", "SSSE3", "VSX", "MATMUL_INT8",
             "LLAMAFILE"]  # fmt: skip
FLAT_LATE_2024 = FLAT_2024[:7] + ["AMX_INT8"] + FLAT_2024[7:]


def flat(values: dict[str, str], head: bool = False) -> str:
    text = "".join(f"{k} = {v} | " for k, v in values.items())
    return ("system_info: n_threads = 4 / 8 | " + text) if head else text


def per_backend(backends: dict[str, dict[str, str]], head: bool = False) -> str:
    text = "".join(
        f"{name} : " + "".join(f"{k} = {v} | " for k, v in feats.items()) for name, feats in backends.items()
    )
    return ("system_info: n_threads = 4 (n_threads_batch = 4) / 8 | " + text) if head else text


def _flat_values(names: list[str], on: set[str]) -> dict[str, str]:
    return {n: "1" if n in on else "0" for n in names}


X86_ON = {"AVX", "AVX2", "FMA", "F16C", "SSE3", "SSSE3", "LLAMAFILE"}
FLAT_CASES = [
    (label, names, _flat_values(names, X86_ON), head)
    for label, names in (("2023", FLAT_2023), ("2024", FLAT_2024), ("late 2024", FLAT_LATE_2024))
    for head in (False, True)
]


@pytest.mark.parametrize("label,names,values,head", FLAT_CASES, ids=[f"{c[0]}-head{c[3]}" for c in FLAT_CASES])
def test_flat_form(label, names, values, head):
    got = isa.parse_system_info(flat(values, head))
    assert got["form"] == "flat" and got["cpu"] == values and got["backends"] == {} and got["skipped"] == []


CPU_X86 = {"SSE3": "1", "SSSE3": "1", "AVX": "1", "AVX2": "1", "F16C": "1", "FMA": "1", "BMI2": "1", "AVX512": "1",
           "LLAMAFILE": "1", "OPENMP": "1", "REPACK": "1"}  # fmt: skip
CPU_ARM = {"NEON": "1", "ARM_FMA": "1", "FP16_VA": "1", "MATMUL_INT8": "1", "SVE": "1", "DOTPROD": "1",
           "SVE_CNT": "16", "SME": "1", "OPENMP": "1", "REPACK": "1", "KLEIDIAI": "1"}  # fmt: skip
BACKEND_CASES = [
    ("cpu only", {"CPU": CPU_X86}),
    ("arm cpu", {"CPU": CPU_ARM}),
    ("cuda then cpu", {"CUDA": {"ARCHS": "500,610,700,750,800", "USE_GRAPHS": "1", "PEER_MAX_BATCH_SIZE": "128"},
                       "CPU": CPU_X86}),
    ("vulkan with nothing", {"Vulkan": {}, "CPU": CPU_ARM}),
    ("cpu then empty blas", {"CPU": CPU_X86, "BLAS": {}}),
    ("metal", {"Metal": {"EMBED_LIBRARY": "1"}, "BLAS": {"ACCELERATE": "1"}, "CPU": CPU_ARM}),
]  # fmt: skip


@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("label,backends", BACKEND_CASES, ids=[c[0] for c in BACKEND_CASES])
def test_per_backend_form(label, backends, head):
    got = isa.parse_system_info(per_backend(backends, head))
    assert got["form"] == "per-backend" and got["skipped"] == []
    assert got["cpu"] == backends["CPU"]
    assert got["backends"] == {k: v for k, v in backends.items() if k != "CPU"}


def test_tools_log_line_with_prefix_is_read_from_system_info_on():
    """What llama-completion logs (a timestamp and level before it); phone.py slices from "system_info:"."""
    line = "0.00.041.112 I " + per_backend({"CPU": CPU_ARM}, head=True)
    got = isa.parse_system_info(line[line.index("system_info:") :])
    assert got["cpu"] == CPU_ARM


def test_a_token_not_understood_is_skipped_alone_and_said():
    text = per_backend({"CPU": CPU_X86}).replace("AVX2 = 1 | ", "AVX2 = 1 | SOMETHING NEW | ")
    got = isa.parse_system_info(text)
    assert got["skipped"] == ["SOMETHING NEW"] and got["cpu"] == CPU_X86


@pytest.mark.parametrize("text", ["", "   ", "garbage", "CPU : ", "CPU : | BLAS : ", "a | b | c"])
def test_nothing_read_is_an_error(text):
    with pytest.raises(isa.SystemInfoError):
        isa.parse_system_info(text)


# --- the comparison --------------------------------------------------------------------------------


def test_amx_left_out_is_a_warning_that_says_why():
    cpu = isa.cpu_features(x86_cpuinfo(SAPPHIRE_RAPIDS_FLAGS))
    build = isa.parse_system_info(per_backend({"CPU": {**CPU_X86, "AVX512_VBMI": "1", "AVX512_VNNI": "1",
                                                       "AVX512_BF16": "1", "AVX_VNNI": "1"}}))  # fmt: skip
    got = isa.compare(cpu, build)
    assert got["unused"] == ["AMX_INT8"] and got["missing_on_cpu"] == []
    (warning,) = got["warnings"]
    assert "CPU has AMX_INT8 but llama.cpp was built without it" in warning
    assert "scripts/llama_cmake_args.sh" in warning


def test_build_beyond_the_cpu_is_a_warning():
    cpu = isa.cpu_features(x86_cpuinfo(HASWELL_FLAGS))
    got = isa.compare(cpu, isa.parse_system_info(per_backend({"CPU": CPU_X86})))
    assert got["missing_on_cpu"] == ["AVX512"] and any("illegal-instruction" in w for w in got["warnings"])


def test_flat_build_that_does_not_list_a_feature_is_not_called_unused():
    cpu = isa.cpu_features(x86_cpuinfo(SAPPHIRE_RAPIDS_FLAGS))
    got = isa.compare(cpu, isa.parse_system_info(flat(_flat_values(FLAT_2023, X86_ON))))
    assert "AMX_INT8" in got["not_reported"] and "BMI2" in got["not_reported"]
    assert "AMX_INT8" not in got["unused"] and "AVX512" in got["unused"]  # listed as 0: unused


def test_unread_cpu_compares_nothing():
    got = isa.compare(isa.cpu_features(""), isa.parse_system_info(per_backend({"CPU": CPU_X86})))
    assert got == {"unused": [], "missing_on_cpu": [], "not_reported": [], "warnings": []}


def test_no_cpu_backend_is_said():
    cpu = isa.cpu_features(x86_cpuinfo(HASWELL_FLAGS))
    got = isa.compare(cpu, isa.parse_system_info(per_backend({"CUDA": {"ARCHS": "890"}})))
    assert got["unused"] == [] and any("no CPU backend" in w for w in got["warnings"])


def _random_cases(n: int = 60):
    rng = random.Random(11)
    cpu_pool = sorted({f for flags in isa.BUILD_TO_CPU.values() for f in flags})
    for i in range(n):
        cpu_flags = [f for f in cpu_pool if rng.random() < 0.5]
        build_on = {k: "1" for k in isa.BUILD_TO_CPU if rng.random() < 0.5}
        yield i, cpu_flags, build_on


@pytest.mark.parametrize("i,cpu_flags,build_on", list(_random_cases()))
def test_comparison_rules_hold_for_generated_cpus_and_builds(i, cpu_flags, build_on):
    """unused: the CPU has it (any of its cpuinfo names) and the build has it off; missing_on_cpu: the reverse;
    the two never meet, and each unused feature is named in the warning."""
    cpu = isa.cpu_features(x86_cpuinfo(" ".join(cpu_flags)) if cpu_flags else "flags\t: \n")
    got = isa.compare(cpu, isa.parse_system_info(per_backend({"CPU": {**build_on, "OPENMP": "1"}})))
    has = set(cpu_flags)
    for feature, names in isa.BUILD_TO_CPU.items():
        cpu_has = bool(has & set(names))
        assert (feature in got["unused"]) == (cpu_has and feature not in build_on)
        assert (feature in got["missing_on_cpu"]) == (not cpu_has and feature in build_on)
    if got["unused"]:
        assert all(f in got["warnings"][0] for f in got["unused"])


def test_the_llama_cpp_here_against_this_cpu():
    """The real llama-cpp-python here: its system_info parses, and it runs here, so it was built for nothing
    this CPU lacks."""
    import llama_cpp  # installed by scripts/setup.sh: missing fails, never skips

    text = llama_cpp.llama_print_system_info().decode()
    with open("/proc/cpuinfo") as f:
        got = isa.summary(f.read(), text)
    assert got["build_features"] and "build_error" not in got and not got.get("build_skipped")
    assert got["missing_on_cpu"] == []
    if "AMX_INT8" in got["unused"]:  # melt's build on an AMX machine (scripts/llama_cmake_args.sh)
        assert any("on purpose" in w for w in got["warnings"])
