"""tegrastats line parser: the three real sample lines (Nano, TX2, Orin Nano) and constructed forms."""

from __future__ import annotations

import pytest

from melt.telemetry.tegrastats import (
    TegraParseError,
    board_input_rail,
    parse_line,
    tegrastats_command,
    total_power_w,
)

# Real lines, copied from /work/shared/samples/tegrastats.txt (sources named there).
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

# AGX Orin, JetPack 6 style (rails have no board input; NC channels printed twice).
AGX_ORIN = (
    "11-21-2025 08:49:48 RAM 13983/62780MB (lfb 424x4MB) SWAP 126/31390MB (cached 0MB) "
    "CPU [90%@2201,100%@2201,100%@2201,100%@2201] EMC_FREQ 1%@2133 GR3D_FREQ 14%@[407,407] VIC_FREQ 115 "
    "NVDLA0_FREQ @1600 APE 174 CV0@73.625C CPU@77.281C Tboard@62C tj@77.281C "
    "VDD_GPU_SOC 3150mW/2971mW VDD_CPU_CV 14312mW/12415mW VIN_SYS_5V0 4968mW/5048mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 1091mW/1091mW NC 0mW/0mW"
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
    assert s.timestamp is None
    assert v["power.pom_5v_in_w"] == 1.388
    assert v["power.pom_5v_gpu_w"] == 0.122
    assert v["power.pom_5v_cpu_w"] == 0.163
    assert s.rails == {"POM_5V_IN": 1.388, "POM_5V_GPU": 0.122, "POM_5V_CPU": 0.163}
    assert v["mem.used_mb"] == 2015 and v["mem.total_mb"] == 3964
    assert v["swap.used_mb"] == 29
    assert [v[f"cpu{i}.util_pct"] for i in range(4)] == [6, 5, 4, 3]
    assert all(v[f"cpu{i}.freq_mhz"] == 102 for i in range(4))
    assert v["cpu.util_pct"] == pytest.approx(4.5)
    assert v["emc.util_pct"] == 0 and "emc.freq_mhz" not in v
    assert v["gpu.util_pct"] == 0 and "gpu.freq_mhz" not in v
    assert v["temp.cpu_c"] == 31.5
    assert v["temp.gpu_c"] == 30.5
    assert v["temp.thermal_c"] == 31.25
    assert v["temp.pll_c"] == 28
    assert "(lfb 98x4MB)" in s.skipped and "(cached 3MB)" in s.skipped
    assert total_power_w(s) == (1.388, "known board input rail")


def test_tx2_l4t28_six_cores_and_unknown_fields():
    s = parse_line(TX2)
    v = s.values
    assert [v[f"cpu{i}.freq_mhz"] for i in range(6)] == [1303, 345, 345, 1419, 1420, 1421]
    assert all(v[f"cpu{i}.util_pct"] == 0 for i in range(6))
    assert "cpu6.util_pct" not in v
    assert v["cpu.util_pct"] == 0
    assert v["emc.freq_mhz"] == 1866 and v["gpu.freq_mhz"] == 140
    assert v["power.vdd_in_w"] == 1.931
    assert v["power.vdd_wifi_w"] == 0.038
    assert v["temp.tdiode_c"] == 37.25 and v["temp.bcpu_c"] == 41
    # APE 150 and MTS fg 1% bg 8% are not understood: listed, and the fields after them still parse
    for token in ("APE", "150", "MTS", "fg", "1%", "bg", "8%"):
        assert token in s.skipped
    assert total_power_w(s) == (1.931, "known board input rail")


def test_orin_nano_jetpack5_date_mw_units_gpc_array_lowercase_zones():
    s = parse_line(ORIN_NANO)
    v = s.values
    assert s.timestamp == "05-15-2025 18:30:28"
    assert v["power.vdd_in_w"] == 17.946
    assert v["power.vdd_cpu_gpu_cv_w"] == 8.896
    assert v["power.vdd_soc_w"] == 3.923
    assert v["gpu.util_pct"] == 84 and v["gpu.freq_mhz"] == 713
    assert v["emc.util_pct"] == 18 and v["emc.freq_mhz"] == 3199
    assert v["temp.tj_c"] == 65.562
    assert v["temp.cpu_c"] == 65.562
    assert v["temp.cv2_c"] == 60.875
    assert v["mem.used_mb"] == 6982 and v["swap.total_mb"] == 16384
    assert v["cpu5.freq_mhz"] == 247
    assert v["cpu.util_pct"] == pytest.approx((97 + 95 + 95 + 91 + 88 + 93) / 6)
    for token in ("NVENC", "1%@115", "NVJPG", "off", "VIC", "31%@115", "PVA0_FREQ", "APE", "174"):
        assert token in s.skipped
    assert not any(k.startswith(("nvenc", "vic", "ape")) for k in v)
    assert total_power_w(s) == (17.946, "known board input rail")


# --- constructed forms -----------------------------------------------------------------------------


def test_three_values_per_rail_take_the_current():
    s = parse_line("RAM 1000/7620MB CPU [10%@1500,off] VDD_IN 5000mW/4800mW/6100mW VDD_SOC 1400/1400/1500")
    assert s.rails == {"VDD_IN": 5.0, "VDD_SOC": 1.4}
    assert s.values["power.vdd_in_w"] == 5.0
    assert s.skipped == []


def test_mw_units_with_and_without_date():
    body = "RAM 1000/7620MB VDD_IN 4321mW/4000mW VDD_CPU_GPU_CV 1000mW/900mW VDD_SOC 1200mW/1100mW"
    dated = parse_line("01-02-2024 03:04:05 " + body)
    plain = parse_line(body)
    assert dated.timestamp == "01-02-2024 03:04:05" and plain.timestamp is None
    assert dated.values == plain.values
    assert plain.values["power.vdd_in_w"] == 4.321
    assert "01-02-2024" not in plain.skipped


def test_gpu_forms():
    assert parse_line("GR3D_FREQ 0%@[0,0]").values == {"gpu.util_pct": 0, "gpu.freq_mhz": 0}
    v = parse_line("GR3D_FREQ 50%@[300,310]").values
    assert v == {"gpu.util_pct": 50, "gpu.freq_mhz": 305}
    assert parse_line("GR3D_FREQ 7%@921").values == {"gpu.util_pct": 7, "gpu.freq_mhz": 921}
    assert parse_line("GR3D_FREQ 7%").values == {"gpu.util_pct": 7}


def test_emc_forms():
    assert parse_line("EMC_FREQ 0%").values == {"emc.util_pct": 0}
    assert parse_line("EMC_FREQ 18%@3199").values == {"emc.util_pct": 18, "emc.freq_mhz": 3199}


def test_cpu_entries_off_and_no_freq():
    v = parse_line("CPU [0%,off,20%@1200,off]").values
    assert v == {"cpu0.util_pct": 0, "cpu2.util_pct": 20, "cpu2.freq_mhz": 1200, "cpu.util_pct": 10}
    all_off = parse_line("RAM 1/2MB CPU [off,off]")
    assert not any(k.startswith("cpu") for k in all_off.values)


def test_malformed_cpu_list_is_skipped_not_guessed():
    s = parse_line("CPU [12%@abc,off] VDD_IN 1000/1000")
    assert not any(k.startswith("cpu") for k in s.values)
    assert "CPU [12%@abc,off]" in s.skipped
    assert s.values["power.vdd_in_w"] == 1.0


def test_agx_orin_nc_ignored_and_sum_of_rails():
    s = parse_line(AGX_ORIN)
    assert "NC" not in s.rails and not any("nc" in k for k in s.values)
    assert s.rails == {"VDD_GPU_SOC": 3.15, "VDD_CPU_CV": 14.312, "VIN_SYS_5V0": 4.968, "VDDQ_VDD2_1V8AO": 1.091}
    assert s.values["gpu.freq_mhz"] == 407 and s.values["gpu.util_pct"] == 14
    assert s.values["temp.cv0_c"] == 73.625
    assert "@1600" in s.skipped and "VIC_FREQ" in s.skipped
    total, method = total_power_w(s)
    assert total == pytest.approx(3.15 + 14.312 + 4.968 + 1.091)
    assert method == "sum of rails (no board input rail on this board)"
    # VIN_SYS_5V0 reads less than one of its siblings: it is a branch, not the board input
    assert s.rails["VIN_SYS_5V0"] < s.rails["VDD_CPU_CV"]


def test_agx_xavier_rails_without_prefix_sum_and_cpu_rail():
    s = parse_line(AGX_XAVIER)
    assert s.rails == {"GPU": 0.0, "CPU": 0.31, "SOC": 1.24, "CV": 0.0, "VDDRQ": 0.155, "SYS5V": 1.598}
    assert s.values["power.cpu_w"] == 0.31 and s.values["power.sys5v_w"] == 1.598
    assert s.values["cpu.util_pct"] == 1.5 and "cpu2.util_pct" not in s.values
    assert s.values["temp.gpu_c"] == 36.5
    total, method = total_power_w(s)
    assert total == pytest.approx(0.31 + 1.24 + 0.155 + 1.598)
    assert method == "sum of rails (no board input rail on this board)"


def test_offline_and_absurd_zones_dropped():
    s = parse_line("CPU@45C iwlwifi@-256C PMIC@200C cold@-41C ok@-40C hot@150C VDD_IN 1000/1000")
    assert s.values["temp.cpu_c"] == 45
    assert s.values["temp.ok_c"] == -40 and s.values["temp.hot_c"] == 150
    assert not any(k in s.values for k in ("temp.iwlwifi_c", "temp.pmic_c", "temp.cold_c"))
    assert s.dropped == ["iwlwifi@-256C", "PMIC@200C", "cold@-41C"]


def test_unknown_tokens_in_the_middle_do_not_break_later_fields():
    s = parse_line(
        "RAM 100/200MB IRAM 0/252kB(lp 252kB) FROB 3 NVDEC 40%@115 ( lfb ZZZ@? CPU [50%@900] "
        "lfb 98x4MB EMC_FREQ 5%@800 WEIRD 1/2/3/4 GR3D_FREQ 9%@[600] soc-thermal@40.5C VDD_IN 2000/2000"
    )
    v = s.values
    assert v["mem.used_mb"] == 100
    assert v["cpu.util_pct"] == 50 and v["cpu0.freq_mhz"] == 900
    assert v["emc.util_pct"] == 5 and v["gpu.freq_mhz"] == 600
    assert v["temp.soc_thermal_c"] == 40.5
    assert s.rails == {"VDD_IN": 2.0}
    for token in ("IRAM", "0/252kB(lp 252kB)", "FROB", "3", "NVDEC", "(", "ZZZ@?", "98x4MB", "WEIRD", "1/2/3/4"):
        assert token in s.skipped


def test_tk1_style_aliases():
    v = parse_line("RAM 1234/1892MB (lfb 5x4MB) cpu [1%@204,off,off,off] EMC 3%@792 AVP 0%@204 GR3D 0%@72").values
    assert v["cpu.util_pct"] == 1 and v["emc.freq_mhz"] == 792 and v["gpu.freq_mhz"] == 72


def test_ram_units_converted_to_mb():
    assert parse_line("RAM 2048/4096kB").values == {"mem.used_mb": 2.0, "mem.total_mb": 4.0}
    assert parse_line("SWAP 1/2GB").values == {"swap.used_mb": 1024.0, "swap.total_mb": 2048.0}


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


# --- board input rail ------------------------------------------------------------------------------


def test_board_input_rail_known_boards():
    assert board_input_rail(["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]) == ("POM_5V_IN", "known board input rail")
    assert board_input_rail(["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]) == ("VDD_IN", "known board input rail")
    assert board_input_rail(["VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_IN", "VDD_SYS_CPU"])[0] == "VDD_IN"
    summed = "sum of rails (no board input rail on this board)"
    assert board_input_rail(["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]) == (None, summed)
    assert board_input_rail(["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]) == (None, summed)
    assert board_input_rail([]) == (None, summed)


def test_board_input_rail_pinned_by_profile():
    rails = ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    assert board_input_rail(rails, pinned="VIN_SYS_5V0") == ("VIN_SYS_5V0", "profile")
    assert board_input_rail(rails, pinned="vin_sys_5v0") == ("VIN_SYS_5V0", "profile")
    assert board_input_rail(["VDD_IN", "VDD_SOC"], pinned="VDD_SOC") == ("VDD_SOC", "profile")
    # a pinned rail that is absent falls through to the table
    assert board_input_rail(["VDD_IN", "VDD_SOC"], pinned="POM_5V_IN") == ("VDD_IN", "known board input rail")


def test_total_power_pinned_and_no_rails():
    s = parse_line(ORIN_NANO)
    assert total_power_w(s, pinned="VDD_SOC") == (3.923, "profile")
    total, method = total_power_w(parse_line("RAM 1/2MB CPU [1%@100]"))
    assert total is None and method


def test_tegrastats_command():
    assert tegrastats_command("/usr/bin/tegrastats", 100) == ["/usr/bin/tegrastats", "--interval", "100"]
    with pytest.raises(ValueError):
        tegrastats_command("tegrastats", 0)
