"""Memory bandwidth: STREAM's conventions in the figures (first repetition dropped, best of the rest, copy counting
read + write), the array sized from the last-level caches, and the probe on an sshd board without Python: the
C helper built here from source, pushed and run there; where nothing can measure, the profile's datasheet
figure is shown and the record says why. (A run on `local` measures through the agent: tests/test_roofline.py.)"""

from __future__ import annotations

import getpass
import json
import platform

import pytest
from conftest import run_melt
from lab import sshd as lab_sshd

from melt.agent import bandwidth as bw
from melt.devices.bandwidth import HelperUnavailable, build_helper, parse_facts


def test_rates_drop_the_first_repetition_and_take_the_best():
    # 1e9 bytes per array; the first repetition (0.1 s, a cold start that happens to look fast) is dropped
    r = bw.rates([0.1, 0.5, 0.25, 1.0], [0.1, 1.0, 0.5, 2.0], 10**9)
    assert r["mem_bw_read_gbs"] == pytest.approx(4.0)  # 1e9 / 0.25 s
    assert r["read_median_gbs"] == pytest.approx(2.0)  # 1e9 / 0.5 s
    assert r["mem_bw_copy_gbs"] == pytest.approx(4.0)  # 2 x 1e9 (read + write) / 0.5 s
    assert r["copy_median_gbs"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bw.rates([0.1], [0.1], 10**9)


ENTRIES = [  # (level, type, size, shared_cpu_list) as sysfs gives them: two clusters with their own L3
    ("1", "Data", "32K", "0"), ("1", "Instruction", "32K", "0"), ("2", "Unified", "512K", "0"),
    ("1", "Data", "32K", "1"), ("2", "Unified", "512K", "1"),
    ("3", "Unified", "2048K", "0-1"), ("3", "Unified", "2048K", "0-1"),  # cpu0 and cpu1 see the same L3
    ("3", "Unified", "4M", "2-3"),
]  # fmt: skip


def test_last_level_caches_are_summed_once_per_physical_cache(tmp_path):
    assert bw.llc_of(ENTRIES) == {"level": 3, "bytes": 6 * 2**20, "instances": 2}
    assert bw.llc_of([]) == {}
    # the same read from a sysfs tree
    for i, (level, kind, size, shared) in enumerate(ENTRIES):
        d = tmp_path / f"sys/devices/system/cpu/cpu{i}/cache/index0"
        d.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            (d / name).write_text(value + "\n")
    assert bw.last_level_caches(str(tmp_path)) == {"level": 3, "bytes": 6 * 2**20, "instances": 2}


def test_arrays_are_four_times_the_caches_and_fit_in_memory():
    big = bw.plan({"level": 3, "bytes": 300 * 2**20, "instances": 1}, 64 * 2**30)
    assert big["bytes_per_array"] == 1200 * 2**20 and "4 x" in big["why"]
    small = bw.plan({"level": 3, "bytes": 2 * 2**20, "instances": 1}, 64 * 2**30)
    assert small["bytes_per_array"] == bw.MIN_ARRAY_BYTES  # STREAM's 4 x would be 8 MiB: too short to time
    capped = bw.plan({"level": 3, "bytes": 300 * 2**20, "instances": 1}, 4 * 2**30)
    assert capped["bytes_per_array"] == 512 * 2**20  # both arrays within a quarter of 4 GiB
    assert "capped" in capped["why"] and "caches may serve part of it" in capped["why"]
    assert bw.plan({}, None)["bytes_per_array"] == 4 * bw.MIN_ARRAY_BYTES


def test_the_helper_is_not_built_for_another_architecture():
    with pytest.raises(HelperUnavailable, match="no cross compiler"):
        build_helper("riscv64" if platform.machine() != "riscv64" else "aarch64")


def test_device_facts_from_the_sh_script():
    text = "".join(f"cache\t{lv}\t{k}\t{s}\t{c}\n" for lv, k, s, c in ENTRIES)
    text += "machine\tx86_64\nthreads\t4\nmemavail_kb\t1024\n"
    facts = parse_facts(text)
    assert facts == {"llc": {"level": 3, "bytes": 6 * 2**20, "instances": 2}, "machine": "x86_64", "threads": 4,
                     "mem_available": 1024 * 1024}  # fmt: skip


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = lab_sshd.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def board_without_python(folder, server, limits: str = "") -> str:
    """An sshd board with no Python: only a (here empty) folder of llama.cpp tools, as a minimal Linux image."""
    (folder / "llama-bin").mkdir(exist_ok=True)
    path = folder / "board.yaml"
    path.write_text(
        f"name: bare-board\nplatform: linux\n"
        f"transport: {{kind: ssh, host: {server.host}, port: {server.port}, user: {getpass.getuser()}, "
        f"identity: {server.client_key}, known_hosts: {server.known_hosts}, host_key_check: strict}}\n"
        f"workdir: {folder / 'device work'}\npython: false\nllama_cpp_bin: {folder / 'llama-bin'}\n{limits}"
    )
    return str(path)


def test_probe_on_a_board_without_python_runs_the_c_helper(tmp_path, sshd):
    profile = board_without_python(tmp_path, sshd, "limits: {mem_bandwidth_gbs: 68}\n")
    proc = run_melt("devices", "probe", profile, "--bandwidth", "--json", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads(proc.stdout)["bandwidth"]
    assert found["mem_bw_read_gbs"] > 0 and found["mem_bw_copy_gbs"] > 0
    assert found["method"]["tool"].startswith("C helper melt/agent/membw.c")
    assert found["attempts"] == ["agent: the device has no Python (profile python:)"]
    assert found["datasheet_gbs"] == 68  # shown beside the measured figure
    assert len(found["copy_s"]) == found["method"]["repetitions"]
    # the helper was pushed by content hash into the board's workdir, not run from this machine's cache
    assert list((tmp_path / "device work" / "agents").glob("melt-membw-*"))


def test_where_nothing_can_measure_the_datasheet_is_used_and_said(tmp_path, sshd, monkeypatch):
    monkeypatch.setenv("CC", "false")  # no working compiler here: the helper cannot be built
    monkeypatch.setenv("MELT_CACHE", str(tmp_path / "cache"))  # and none built earlier is cached
    profile = board_without_python(tmp_path, sshd, "limits: {mem_bandwidth_gbs: 68}\n")
    proc = run_melt("devices", "probe", profile, "--bandwidth", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "memory bandwidth" in x)
    assert "not measured: agent: the device has no Python" in line
    assert "C helper: false could not build membw.c" in line
    assert "the roofline uses the profile's limits.mem_bandwidth_gbs (68 GB/s, a datasheet figure)" in line
