"""Raspberry Pi vcgencmd parsers: measure_temp, get_throttled, and a real Pi 5 pmic_read_adc dump."""

from __future__ import annotations

import pytest

from melt.telemetry.vcgencmd import (
    VcgencmdParseError,
    parse_get_throttled,
    parse_measure_temp,
    parse_pmic_read_adc,
)

# Copied from tests/samples/vcgencmd.txt (vendored from ../shared/samples): a Pi 5 under load.
PMIC = """\
 3V7_WL_SW_A current(0)=0.05855580A
   3V3_SYS_A current(1)=0.06148359A
   1V8_SYS_A current(2)=0.13272650A
  DDR_VDD2_A current(3)=0.13955800A
  DDR_VDDQ_A current(4)=0.00980400A
   1V1_SYS_A current(5)=0.19811380A
    0V8_SW_A current(6)=0.34157550A
  VDD_CORE_A current(7)=5.03652000A
   3V3_DAC_A current(17)=0.00006105A
   3V3_ADC_A current(18)=0.00054945A
   0V8_AON_A current(16)=0.00531135A
      HDMI_A current(22)=0.02161170A
 3V7_WL_SW_V volt(8)=3.61069200V
   3V3_SYS_V volt(9)=3.29982600V
   1V8_SYS_V volt(10)=1.81684800V
  DDR_VDD2_V volt(11)=1.10109800V
  DDR_VDDQ_V volt(12)=0.60366240V
   1V1_SYS_V volt(13)=1.10292900V
    0V8_SW_V volt(14)=0.80292960V
  VDD_CORE_V volt(15)=0.89369880V
   3V3_DAC_V volt(20)=3.29944700V
   3V3_ADC_V volt(21)=3.30402600V
   0V8_AON_V volt(19)=0.79618980V
      HDMI_V volt(23)=4.92450000V
     EXT5V_V volt(24)=4.92450000V
      BATT_V volt(25)=0.00341880V
"""

# (current A, voltage V) of the 12 rails that have both
PAIRS = {
    "3V7_WL_SW": (0.05855580, 3.61069200),
    "3V3_SYS": (0.06148359, 3.29982600),
    "1V8_SYS": (0.13272650, 1.81684800),
    "DDR_VDD2": (0.13955800, 1.10109800),
    "DDR_VDDQ": (0.00980400, 0.60366240),
    "1V1_SYS": (0.19811380, 1.10292900),
    "0V8_SW": (0.34157550, 0.80292960),
    "VDD_CORE": (5.03652000, 0.89369880),
    "3V3_DAC": (0.00006105, 3.29944700),
    "3V3_ADC": (0.00054945, 3.30402600),
    "0V8_AON": (0.00531135, 0.79618980),
    "HDMI": (0.02161170, 4.92450000),
}


def test_measure_temp():
    assert parse_measure_temp("temp=48.3'C\n") == 48.3
    assert parse_measure_temp("temp=-2.0'C") == -2.0
    assert parse_measure_temp("temp=61.0°C") == 61.0


@pytest.mark.parametrize("text", ["", 'error=1 error_msg="Command not registered"', "temp=hot'C", "48.3'C"])
def test_measure_temp_malformed(text):
    with pytest.raises(VcgencmdParseError):
        parse_measure_temp(text)


def test_get_throttled_sample_0x50000():
    t = parse_get_throttled("throttled=0x50000\n")
    assert t["raw"] == 0x50000
    assert not any(t[k] for k in ("under_voltage_now", "arm_freq_capped_now", "throttled_now", "soft_temp_limit_now"))
    assert t["throttling_now"] is False
    assert t["under_voltage_occurred"] is True
    assert t["throttled_occurred"] is True
    assert t["arm_freq_capped_occurred"] is False
    assert t["soft_temp_limit_occurred"] is False


def test_get_throttled_bits_now():
    zero = parse_get_throttled("throttled=0x0")
    assert zero["raw"] == 0 and not any(v for k, v in zero.items() if k != "raw")
    uv = parse_get_throttled("throttled=0x1")
    assert uv["under_voltage_now"] is True and uv["throttling_now"] is False
    for bit, name in ((0x2, "arm_freq_capped_now"), (0x4, "throttled_now"), (0x8, "soft_temp_limit_now")):
        t = parse_get_throttled(f"throttled={hex(bit)}")
        assert t[name] is True and t["throttling_now"] is True
    every = parse_get_throttled("throttled=0xF000F")
    assert all(v for k, v in every.items() if k != "raw")


@pytest.mark.parametrize("text", ["", "throttled=", "throttled=0xZZ", "temp=48.3'C"])
def test_get_throttled_malformed(text):
    with pytest.raises(VcgencmdParseError):
        parse_get_throttled(text)


def test_pmic_read_adc_pi5():
    r = parse_pmic_read_adc(PMIC)
    assert len(r["rails"]) == 14
    assert r["rails"]["VDD_CORE"] == {"current_a": 5.03652, "voltage_v": 0.8936988}
    assert r["rails"]["3V7_WL_SW"]["current_a"] == 0.0585558
    assert r["rails"]["EXT5V"] == {"current_a": None, "voltage_v": 4.9245}
    assert r["rails"]["BATT"] == {"current_a": None, "voltage_v": 0.0034188}
    assert set(r["power_w"]) == set(PAIRS)
    for name, (amps, volts) in PAIRS.items():
        assert r["power_w"][name] == pytest.approx(amps * volts)
    expected = sum(a * v for a, v in PAIRS.values())
    assert r["total_w"] == pytest.approx(expected)
    assert r["total_w"] == pytest.approx(5.9216, abs=1e-4)
    assert r["skipped"] == []


def test_pmic_unknown_lines_skipped():
    text = "PMIC dump v2\n" + PMIC + "  FOO_A current(40)=bad\n  BAR_X thing(1)=2Q\n  MIX_A volt(3)=1.0V\n"
    r = parse_pmic_read_adc(text)
    assert len(r["power_w"]) == 12
    assert r["skipped"] == ["PMIC dump v2", "FOO_A current(40)=bad", "BAR_X thing(1)=2Q", "MIX_A volt(3)=1.0V"]


def test_pmic_voltage_only_has_no_total():
    r = parse_pmic_read_adc("     EXT5V_V volt(24)=5.10000000V\n")
    assert r["power_w"] == {} and r["total_w"] is None


@pytest.mark.parametrize("text", ["", "\n\n", 'error=2 error_msg="Invalid arguments"', "temp=48.3'C"])
def test_pmic_malformed(text):
    with pytest.raises(VcgencmdParseError):
        parse_pmic_read_adc(text)
