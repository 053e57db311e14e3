"""tegrastats line parser: the real sample lines, the issue's inputs, and every documented form
generated (x units, x dates, with unknown and unclosed tokens put anywhere in the line)."""

from __future__ import annotations

import itertools
import random

import pytest

from melt.telemetry.tegrastats import TegraParseError, parse_line, tegrastats_command

# Real lines, copied from tests/samples/tegrastats.txt (from ../shared/samples; sources named there).
NANO = (
    "RAM 2015/3964MB (lfb 98x4MB) SWAP 29/1982MB (cached 3MB) CPU [6%@102,5%@102,4%@102,3%@102] "
    "EMC_FREQ 0% GR3D_FREQ 0% PLL@28C CPU@31.5C PMIC@100C GPU@30.5C AO@36C thermal@31.25C "
    "POM_5V_IN 1388/1388 POM_5V_GPU 122/122 POM_5V_CPU 163/163"
)
TX2 = (
    "RAM 1685/7854MB (lfb 1044x4MB) SWAP 278/8192MB (cached 23MB) "
    "CPU [0%@1303,0%@345,0%@345,0%@1419,0%@1420,0%@1421] EMC_FREQ 0%@1866 GR3D_FREQ 0%@140 APE 150 "
    "MTS fg 1% bg 8% BCPU@41C MCPU@41C GPU@39C PLL@41C Tboard@37C Tdiode@37.25C PMIC@100C thermal@39.9C "
    "VDD_IN 1931/1931 VDD_CPU 231/231 VDD_GPU 154/154 VDD_SOC 385/385 VDD_WIFI 38/38 VDD_DDR 326/326"
)
ORIN_NANO = (
    "05-15-2025 18:30:28 RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) "
    "CPU [97%@1984,95%@1984,95%@1984,91%@1984,88%@1984,93%@247] EMC_FREQ 18%@3199 GR3D_FREQ 84%@[713] "
    "NVENC 1%@115 NVDEC 40%@115 NVJPG off NVJPG1 off VIC 31%@115 OFA off NVDLA0 off PVA0_FREQ off APE 174 "
    "cv0@63.031C cpu@65.562C soc2@64.156C soc0@63.031C cv1@62.937C gpu@63.5C tj@65.562C soc1@64.718C "
    "cv2@60.875C VDD_IN 17946mW/15710mW VDD_CPU_GPU_CV 8896mW/7585mW VDD_SOC 3923mW/3515mW"
)
# The inputs: an older L4T line (one clock after the bracket, lower-case cpu, short names) and
# a Jetson AGX Thor's rails (JetPack 7: cur/avg/max with units; VIN is the input).
OLD_L4T = (
    "RAM 2900/3983MB (lfb 40x4MB) SWAP 700/8192MB (cached 200MB) cpu [20%,10%,30%,0%]@518 EMC 2%@800 APE 25 GR3D 7%@76"
)
THOR_RAILS = (
    "VDD_GPU 30000mW/30000mW/30000mW VDD_CPU_SOC_MSS 15000mW/15000mW/15000mW "
    "VIN_SYS_5V0 12000mW/12000mW/12000mW VIN 70000mW/35000mW/70000mW"
)
# AGX Xavier style: rails without any VDD_ prefix, one of them literally named CPU.
AGX_XAVIER = (
    "RAM 2721/15692MB (lfb 2357x4MB) SWAP 0/7846MB (cached 0MB) CPU [1%@1190,2%@1190,off,off] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@1377 APE 150 MTS fg 0% bg 0% AO@36.5C GPU@36.5C Tdiode@39.5C "
    "GPU 0/0 CPU 310/310 SOC 1240/1240 CV 0/0 VDDRQ 155/155 SYS5V 1598/1598"
)


# --- the real sample lines -------------------------------------------------------------------------


def test_nano_jetpack4_rails_without_units():
    s = parse_line(NANO)
    v = s.values
    assert s.timestamp is None and s.skipped == []
    assert s.rails == {"POM_5V_IN": 1.388, "POM_5V_GPU": 0.122, "POM_5V_CPU": 0.163}
    assert v["power.pom_5v_in_w"] == 1.388
    assert v["mem.used_mb"] == 2015 and v["mem.total_mb"] == 3964
    assert v["swap.used_mb"] == 29 and v["swap.cached_mb"] == 3
    assert [v[f"cpu{i}.util_pct"] for i in range(4)] == [6, 5, 4, 3]
    assert all(v[f"cpu{i}.freq_mhz"] == 102 for i in range(4))
    assert v["cpu.util_pct"] == pytest.approx(4.5)
    assert v["emc.util_pct"] == 0 and "emc.freq_mhz" not in v
    assert v["gpu.util_pct"] == 0 and "gpu.freq_mhz" not in v
    assert v["temp.cpu_c"] == 31.5 and v["temp.gpu_c"] == 30.5 and v["temp.thermal_c"] == 31.25
    # PMIC@100C is a fixed placeholder, not a temperature: it must not become the hottest zone
    assert "temp.pmic_c" not in v and s.dropped == ["PMIC@100C"]
    assert "rails cur/avg" in s.form and "CPU [x%@f]" in s.form


def test_tx2_l4t28_six_cores_engines_and_mts():
    s = parse_line(TX2)
    v = s.values
    assert s.skipped == []
    assert [v[f"cpu{i}.freq_mhz"] for i in range(6)] == [1303, 345, 345, 1419, 1420, 1421]
    assert v["cpu.util_pct"] == 0 and "cpu6.util_pct" not in v
    assert v["emc.freq_mhz"] == 1866 and v["gpu.freq_mhz"] == 140
    assert v["ape.freq_mhz"] == 150 and v["mts.fg_pct"] == 1 and v["mts.bg_pct"] == 8
    assert v["power.vdd_in_w"] == 1.931 and v["power.vdd_wifi_w"] == 0.038
    assert v["temp.tdiode_c"] == 37.25 and v["temp.bcpu_c"] == 41


def test_orin_nano_jetpack5_date_mw_units_gpc_array_engines():
    s = parse_line(ORIN_NANO)
    v = s.values
    assert s.timestamp == "05-15-2025 18:30:28" and s.skipped == []
    assert s.rails == {"VDD_IN": 17.946, "VDD_CPU_GPU_CV": 8.896, "VDD_SOC": 3.923}
    assert v["gpu.util_pct"] == 84 and v["gpu.freq_mhz"] == 713
    assert v["emc.util_pct"] == 18 and v["emc.freq_mhz"] == 3199
    assert v["temp.tj_c"] == 65.562 and v["temp.cv2_c"] == 60.875
    assert v["cpu5.freq_mhz"] == 247
    assert v["cpu.util_pct"] == pytest.approx((97 + 95 + 95 + 91 + 88 + 93) / 6)
    assert v["nvenc.util_pct"] == 1 and v["nvenc.freq_mhz"] == 115 and v["vic.util_pct"] == 31
    assert v["ape.freq_mhz"] == 174
    assert not any(k.startswith(("nvjpg", "ofa", "nvdla0", "pva0")) for k in v)  # off: no load, no clock
    assert s.form.startswith("dated")


def test_shared_sample_file_lines_all_read_without_skips():
    """Every line of tests/samples/tegrastats.txt (vendored from ../shared/samples) parses fully."""
    from pathlib import Path

    path = Path(__file__).resolve().parent / "samples" / "tegrastats.txt"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 3
    for line in lines:
        s = parse_line(line)
        assert s.skipped == [] and s.rails and "cpu.util_pct" in s.values, line


# --- the inputs ----------------------------------------------------------------------------


def test_old_l4t_clock_after_the_bracket():
    s = parse_line(OLD_L4T)
    v = s.values
    assert s.skipped == []
    assert v["cpu.util_pct"] == 15.0  # mean of the online cores
    assert [v[f"cpu{i}.freq_mhz"] for i in range(4)] == [518] * 4
    assert v["emc.util_pct"] == 2 and v["emc.freq_mhz"] == 800
    assert v["gpu.util_pct"] == 7 and v["gpu.freq_mhz"] == 76
    assert v["mem.used_mb"] == 2900 and v["swap.used_mb"] == 700 and v["ape.freq_mhz"] == 25
    assert s.form == "cpu [x%]@f; EMC; GR3D"


def test_thor_rails_read_each_one():
    s = parse_line(THOR_RAILS)
    assert s.rails == {"VDD_GPU": 30.0, "VDD_CPU_SOC_MSS": 15.0, "VIN_SYS_5V0": 12.0, "VIN": 70.0}
    assert s.form == "rails mW cur/avg/max"


def test_offline_cores_and_unknown_clocks():
    v = parse_line("cpu [40%,off,20%,off]@-1 EMC 3%@-1 GR3D 9%@-1").values
    assert v == {"cpu0.util_pct": 40, "cpu2.util_pct": 20, "cpu.util_pct": 30, "emc.util_pct": 3, "gpu.util_pct": 9}
    v = parse_line("CPU [10%@-1,off,30%@1200]").values
    assert v == {"cpu0.util_pct": 10, "cpu2.util_pct": 30, "cpu2.freq_mhz": 1200, "cpu.util_pct": 20}
    assert not any(k.startswith("cpu") for k in parse_line("RAM 1/2MB CPU [off,off]").values)


def test_jetpack7_temperatures_take_the_first_value_and_thor_gpc_clocks():
    s = parse_line("cpu@52.968C/53.1C soc2@48.406C/48.406C GR3D_FREQ @[1000,1000,1000] GPU@-256C/-256C")
    assert s.values == {"temp.cpu_c": 52.968, "temp.soc2_c": 48.406, "gpu.freq_mhz": 1000}
    assert s.dropped == ["GPU@-256C/-256C"] and "zone@t1C/t2C" in s.form


# --- every documented form, generated --------------------------------------------------------------

N_CORES = 4
CPU_FORMS = {  # form -> (text, values)
    "CPU [x%@f]": (
        "CPU [10%@1200,off,30%@-1,50%@1400]",
        {"cpu0.util_pct": 10, "cpu0.freq_mhz": 1200, "cpu2.util_pct": 30, "cpu3.util_pct": 50,
         "cpu3.freq_mhz": 1400, "cpu.util_pct": 30},
    ),
    "cpu [x%]@f": (
        "cpu [10%,off,30%,50%]@518",
        {"cpu0.util_pct": 10, "cpu2.util_pct": 30, "cpu3.util_pct": 50, "cpu.util_pct": 30,
         **{f"cpu{i}.freq_mhz": 518 for i in (0, 2, 3)}},
    ),
    "CPU [x%]@f": ("CPU [10%,20%]@-1", {"cpu0.util_pct": 10, "cpu1.util_pct": 20, "cpu.util_pct": 15}),
    "CPU [x%]": ("CPU [0%,off]", {"cpu0.util_pct": 0, "cpu.util_pct": 0}),
}  # fmt: skip
EMC_FORMS = {
    "EMC x%@f": ("EMC 2%@800", {"emc.util_pct": 2, "emc.freq_mhz": 800}),
    "EMC_FREQ x%": ("EMC_FREQ 0%", {"emc.util_pct": 0}),
    "EMC_FREQ x%@f": ("EMC_FREQ 18%@3199", {"emc.util_pct": 18, "emc.freq_mhz": 3199}),
    "EMC_FREQ x%@-1": ("EMC_FREQ 5%@-1", {"emc.util_pct": 5}),
}
GPU_FORMS = {
    "GR3D x%@f": ("GR3D 7%@76", {"gpu.util_pct": 7, "gpu.freq_mhz": 76}),
    "GR3D_FREQ x%": ("GR3D_FREQ 7%", {"gpu.util_pct": 7}),
    "GR3D_FREQ x%@f": ("GR3D_FREQ 7%@921", {"gpu.util_pct": 7, "gpu.freq_mhz": 921}),
    "GR3D_FREQ x%@[f,f]": ("GR3D_FREQ 50%@[300,310]", {"gpu.util_pct": 50, "gpu.freq_mhz": 305}),
    "GR3D_FREQ @[f,f,f]": ("GR3D_FREQ @[1000,1000,1000]", {"gpu.freq_mhz": 1000}),
}
TEMP_FORMS = {
    "zone@tC": ("CPU@41.5C Tdiode@37.25C", {"temp.cpu_c": 41.5, "temp.tdiode_c": 37.25}),
    "zone@t1C/t2C": ("cpu@52.968C/52.968C tj@50C/51C", {"temp.cpu_c": 52.968, "temp.tj_c": 50}),
}
RAIL_FORMS = {  # (cur, avg[, max]) in mW; the current is the reading
    "cur/avg": "{name} {cur}/{avg}",
    "mW cur/avg": "{name} {cur}mW/{avg}mW",
    "cur/avg/max": "{name} {cur}/{avg}/{max}",
    "mW cur/avg/max": "{name} {cur}mW/{avg}mW/{max}mW",
}
MEM_UNITS = {"kB": 1 / 1024, "MB": 1.0, "GB": 1024.0}


def _line(cpu, emc, gpu, temp, rail, unit, dated):
    rails = [("VDD_IN", 5123), ("VDD_CPU_GPU_CV", 1800), ("NC", 0), ("VDD_SOC", 999)]
    parts = ["01-02-2026 03:04:05"] if dated else []
    parts += [f"RAM 2048/4096{unit} (lfb 40x4MB)", f"SWAP 0/1024{unit} (cached 0{unit})", CPU_FORMS[cpu][0]]
    parts += [EMC_FORMS[emc][0], GPU_FORMS[gpu][0], "APE 25", TEMP_FORMS[temp][0]]
    parts += [RAIL_FORMS[rail].format(name=n, cur=mw, avg=max(mw - 1, 0), max=mw + 7) for n, mw in rails]
    expected = {**CPU_FORMS[cpu][1], **EMC_FORMS[emc][1], **GPU_FORMS[gpu][1], **TEMP_FORMS[temp][1]}
    expected.update({"mem.used_mb": 2048 * MEM_UNITS[unit], "mem.total_mb": 4096 * MEM_UNITS[unit]})
    expected.update({"swap.used_mb": 0.0, "swap.total_mb": 1024 * MEM_UNITS[unit], "swap.cached_mb": 0.0})
    expected.update({"ape.freq_mhz": 25, "power.vdd_in_w": 5.123, "power.vdd_cpu_gpu_cv_w": 1.8})
    expected["power.vdd_soc_w"] = 0.999
    return " ".join(parts), expected


ALL_FORMS = list(itertools.product(CPU_FORMS, EMC_FORMS, GPU_FORMS, TEMP_FORMS, RAIL_FORMS, MEM_UNITS, (False, True)))


def test_every_form_by_units_and_date_reads_every_field():
    assert len(ALL_FORMS) == 4 * 4 * 5 * 2 * 4 * 3 * 2
    for combo in ALL_FORMS:
        line, expected = _line(*combo)
        s = parse_line(line)
        assert s.values == pytest.approx(expected), line
        assert s.skipped == [] and s.dropped == [], line
        assert s.rails == {"VDD_IN": 5.123, "VDD_CPU_GPU_CV": 1.8, "VDD_SOC": 0.999}, line
        assert (s.timestamp is not None) == combo[-1]


UNKNOWN = ["Frob", "3x", "ZZZ@?", "1/2/3/4", "lfb", "%", "@", "limit", "WEIRD 1/2/3/4/5", "(lp 252kB)"]
UNCLOSED = ["(", "(lfb", "[", "[1%,2%", "CPU [1%,2%", "cpu [7%@100", "(cached"]


@pytest.mark.parametrize("seed", range(60))
def test_unknown_and_unclosed_tokens_anywhere_are_skipped_alone(seed):
    """A token not understood, or a field that never closes, put anywhere in a line of any form, is
    listed on its own and every other field is still read."""
    rnd = random.Random(seed)
    combo = rnd.choice(ALL_FORMS)
    line, expected = _line(*combo)
    tokens = line.split()
    first = 2 if combo[-1] else 0  # the date stays first
    # insert between fields only (never inside a field of two or more tokens)
    field_starts = [i for i, t in enumerate(tokens) if i >= first and _starts_field(tokens, i)]
    junk = rnd.sample(UNKNOWN, 2) + [rnd.choice(UNCLOSED)]
    for bad in junk:
        at = rnd.choice(field_starts + [len(tokens)])
        tokens[at:at] = [bad]
        field_starts = [i + 1 if i >= at else i for i in field_starts]
    s = parse_line(" ".join(tokens))
    assert s.values == pytest.approx(expected), " ".join(tokens)
    for bad in junk:
        for piece in _pieces(bad):
            assert piece in s.skipped, (piece, s.skipped, " ".join(tokens))


def _starts_field(tokens: list[str], i: int) -> bool:
    """Whether tokens[i] begins a field of the generated line (so junk goes between fields)."""
    prev = tokens[i - 1] if i else ""
    t = tokens[i]
    if prev.startswith("(") and ")" not in prev:
        return False  # inside a group
    if t.startswith("(") or prev in ("RAM", "SWAP", "CPU", "cpu", "EMC", "EMC_FREQ", "GR3D", "GR3D_FREQ", "APE"):
        return False
    return not (prev.isupper() and ("/" in t) and "@" not in t)  # a rail's value follows its name


def _pieces(bad: str) -> list[str]:
    """How a junk insertion shows up in `skipped`: a closed unknown group whole, else token by token
    (an unclosed CPU list is its keyword alone, then its list)."""
    if bad.startswith("(") and bad.endswith(")"):
        return [bad]
    return bad.split()


def test_a_malformed_core_is_skipped_alone_and_the_mean_withheld():
    s = parse_line("CPU [12%@abc,off,40%@900] VDD_IN 1000/1000")
    assert s.values == {"cpu2.util_pct": 40, "cpu2.freq_mhz": 900, "power.vdd_in_w": 1.0}
    assert s.skipped == ["cpu0:12%@abc"]


def test_agx_xavier_rail_named_cpu_beside_the_cpu_field():
    s = parse_line(AGX_XAVIER)
    assert s.rails == {"GPU": 0.0, "CPU": 0.31, "SOC": 1.24, "CV": 0.0, "VDDRQ": 0.155, "SYS5V": 1.598}
    assert s.values["cpu.util_pct"] == 1.5 and "cpu2.util_pct" not in s.values
    assert s.values["temp.gpu_c"] == 36.5 and s.skipped == []


def test_implausible_zones_dropped_not_read():
    s = parse_line("CPU@45C iwlwifi@-256C PMIC@200C cold@-41C ok@-40C hot@150C PMIC@100C VDD_IN 1000/1000")
    assert s.values["temp.cpu_c"] == 45
    assert s.values["temp.ok_c"] == -40 and s.values["temp.hot_c"] == 150
    assert s.dropped == ["iwlwifi@-256C", "PMIC@200C", "cold@-41C", "PMIC@100C"]


def test_glued_group_and_iram():
    s = parse_line("RAM 100/200MB IRAM 0/252kB(lfb 252kB) SWAP 1/2GB")
    assert s.values["iram.total_mb"] == pytest.approx(252 / 1024) and s.values["swap.total_mb"] == 2048
    assert s.skipped == []


@pytest.mark.parametrize(
    "line",
    ["", "   ", "hello world", "RAM", "01-02-2024 03:04:05", "RAM 1/2XB", "Segmentation fault (core dumped)"],
)
def test_not_a_tegrastats_line(line):
    with pytest.raises(TegraParseError):
        parse_line(line)


def test_non_text_is_a_parse_error():
    with pytest.raises(TegraParseError):
        parse_line(None)  # type: ignore[arg-type]


def test_tegrastats_command():
    assert tegrastats_command("/usr/bin/tegrastats", 100) == ["/usr/bin/tegrastats", "--interval", "100"]
    with pytest.raises(ValueError):
        tegrastats_command("tegrastats", 0)
