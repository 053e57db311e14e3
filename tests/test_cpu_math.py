"""The thread count llama.cpp's tools default to (common_cpu_get_num_math), on generated sysfs trees of each
kind of CPU, and on this machine against the real llama-bench's own --help default."""

from __future__ import annotations

import re
import subprocess

import pytest

from melt.runtimes.cpu_math import math_cpus, physical_cores


def sysfs(root, siblings: list[str], hybrid_cores: str | None = None) -> str:
    """A tree with cpuN/topology/thread_siblings (kernel hex masks) and, for a hybrid CPU, cpu_core/cpus."""
    for n, mask in enumerate(siblings):
        d = root / "sys/devices/system/cpu" / f"cpu{n}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings").write_text(mask + "\n")
    if hybrid_cores is not None:
        (root / "sys/devices/cpu_core").mkdir(parents=True)
        (root / "sys/devices/cpu_core/cpus").write_text(hybrid_cores + "\n")
    return str(root)


def smt_masks(cores: int, ways: int) -> list[str]:
    """thread_siblings for `cores` cores of `ways` threads each, numbered core after core."""
    return [f"{sum(1 << (c * ways + w) for w in range(ways)):x}" for c in range(cores) for _ in range(ways)]


@pytest.mark.parametrize("cores, ways", [(1, 1), (4, 1), (8, 1), (2, 2), (8, 2), (6, 4)])
def test_physical_cores_are_the_distinct_sibling_sets(tmp_path, cores, ways):
    root = sysfs(tmp_path, smt_masks(cores, ways))
    assert physical_cores(root, "Linux") == cores
    assert math_cpus(root, "Linux", "aarch64", cores * ways) == cores  # ARM big.LITTLE: every core counts
    assert math_cpus(root, "Linux", "x86_64", cores * ways) == cores  # not hybrid: no cpu_core list


@pytest.mark.parametrize(
    "p_cores, e_cores, cpu_core_list",
    [(8, 16, "0-15"), (6, 8, "0-11"), (2, 8, "0-3"), (4, 4, "0,1,2-7")],
)
def test_hybrid_x86_counts_performance_cores(tmp_path, p_cores, e_cores, cpu_core_list):
    """Intel P-cores (two threads each) first, then E-cores (one each), as such CPUs number them."""
    masks = smt_masks(p_cores, 2) + [f"{1 << (2 * p_cores + e):x}" for e in range(e_cores)]
    root = sysfs(tmp_path, masks, cpu_core_list)
    assert physical_cores(root, "Linux") == p_cores + e_cores
    assert math_cpus(root, "Linux", "x86_64", len(masks)) == p_cores
    assert math_cpus(root, "Linux", "aarch64", len(masks)) == p_cores + e_cores  # the rule is x86-64 only


@pytest.mark.parametrize("n_logical, want", [(1, 1), (3, 3), (4, 4), (6, 3), (16, 8), (0, 4)])  # 0: unknown
def test_without_topology_half_the_logical_cpus_above_four(tmp_path, n_logical, want):
    assert physical_cores(str(tmp_path), "Linux", n_logical) == want
    assert physical_cores(str(tmp_path), "Windows", n_logical) == want


def test_counting_stops_at_the_first_cpu_without_topology(tmp_path):
    root = sysfs(tmp_path, smt_masks(4, 1))
    (tmp_path / "sys/devices/system/cpu/cpu1/topology/thread_siblings").unlink()
    assert physical_cores(root, "Linux") == 1


@pytest.mark.parametrize("cores, ways, want", [(4, 8, 8), (4, 2, 8), (4, 1, 4)])
def test_powerpc_counts_at_most_two_threads_a_core(tmp_path, cores, ways, want):
    root = sysfs(tmp_path, smt_masks(cores, ways))
    assert math_cpus(root, "Linux", "ppc64le", cores * ways) == want


def test_this_machine_matches_llama_bench_default(llama_bench_bin):
    """llama-bench prints its -t default, common_cpu_get_num_math() run by llama.cpp itself."""
    text = subprocess.run([str(llama_bench_bin), "--help"], capture_output=True, text=True).stdout
    (default,) = re.findall(r"-t, --threads <n>\s+\(default: (\d+)\)", text)
    assert math_cpus() == int(default)
