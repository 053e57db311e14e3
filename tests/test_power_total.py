"""Which channel is total power: one decision over every probe's rails and totals (power_rails.choose),
checked family by family from the table, with generated rail sets, device trees and pins."""

from __future__ import annotations

import itertools
import random

import pytest

from melt.telemetry.power_rails import BOARD_FAMILIES, Choice, choose, identify_board


def rail(label: str, method: str = "tegrastats", probe: str | None = None, labelled: bool = True, chip=None) -> dict:
    name = label.lower().replace(" ", "_").replace("-", "_")
    return {"channel": f"power.{name}_w", "label": label, "labelled": labelled, "chip": chip,
            "method": method, "probe": probe or method}  # fmt: skip


def dt(root, model: str | None = None, compatible: list[str] | None = None):
    base = root / "proc" / "device-tree"
    base.mkdir(parents=True, exist_ok=True)
    if model is not None:
        (base / "model").write_bytes(model.encode() + b"\0")
    if compatible is not None:
        (base / "compatible").write_bytes(b"\0".join(c.encode() for c in compatible) + b"\0")
    return str(root)


NOWHERE = "/nonexistent-root"
WITH_INPUT = [f for f in BOARD_FAMILIES if f.inputs]
BRANCHES_ONLY = [f for f in BOARD_FAMILIES if not f.inputs]


def test_the_table_says_where_each_family_came_from():
    assert {f.name for f in BRANCHES_ONLY} == {"Jetson AGX Xavier", "Jetson AGX Orin"}
    for f in BOARD_FAMILIES:
        assert f.source and f.soc.startswith("nvidia,tegra")
        assert f.sum_of_branches == (not f.inputs)
        assert not {i.upper() for i in f.inputs} & {b.upper() for b in f.branches}


@pytest.mark.parametrize("family", WITH_INPUT, ids=lambda f: f.name)
@pytest.mark.parametrize("order", ["input_first", "input_last", "shuffled"])
def test_each_family_input_rail_is_the_total_never_a_sum(family, order):
    for inp in family.inputs:
        rails = [rail(b) for b in family.branches] + [rail(inp)]
        if order == "input_first":
            rails = rails[-1:] + rails[:-1]
        elif order == "shuffled":
            random.Random(inp).shuffle(rails)
        c = choose(rails, [], None, NOWHERE)
        assert (c.kind, c.channels) == ("rail", (rail(inp)["channel"],)), inp
        twins = [
            f for f in BOARD_FAMILIES if f is not family and {r.upper() for r in (inp, *family.branches)} <= f.rails()
        ]
        if twins:  # Xavier NX and Orin NX print the same rails: told apart only by the device tree
            assert c.rule == "input rail by name" and "not identified" in c.why
        else:
            assert c.rule == "board input rail" and c.board["family"] == family.name
            assert inp in c.why and family.name in c.why


def test_thor_the_issue_line_is_70_w_not_127():
    rails = [rail(r) for r in ("VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN")]
    c = choose(rails, [], None, NOWHERE)
    values = {
        "power.vdd_gpu_w": 30.0,
        "power.vdd_cpu_soc_mss_w": 15.0,
        "power.vin_sys_5v0_w": 12.0,
        "power.vin_w": 70.0,
    }
    assert c.total_w(values, {}) == 70.0
    assert c.to_json()["power_rule"] == "board input rail: VIN is the input of a Jetson AGX Thor"


def test_thor_unlabelled_ina238_from_sysfs_wins_over_the_same_rail_printed_by_tegrastats():
    rails = [
        rail("VDD_GPU", "ina3221", "ina2xx"), rail("VDD_CPU_SOC_MSS", "ina3221", "ina2xx"),
        rail("VIN_SYS_5V0", "ina3221", "ina2xx"),
        rail("ina238 1-0040", "ina238", "ina2xx", labelled=False, chip="ina238"),
        rail("VIN"),
    ]  # fmt: skip
    c = choose(rails, [], None, NOWHERE)
    assert c.channels == ("power.ina238_1_0040_w",) and c.method == "ina238"
    assert "unlabelled ina238" in c.why and "VIN" in c.why


@pytest.mark.parametrize("family", BRANCHES_ONLY, ids=lambda f: f.name)
def test_branch_only_families_sum_their_branches_and_only_them(family):
    rails = [rail(b) for b in family.branches]
    c = choose(rails, [], None, NOWHERE)
    assert c.kind == "sum" and set(c.channels) == {r["channel"] for r in rails} and c.rule == "sum of branch rails"
    values = {r["channel"]: float(i + 1) for i, r in enumerate(rails)}
    assert c.total_w(values, {}) == sum(values.values())
    del values[rails[0]["channel"]]
    assert c.total_w(values, {}) is None  # a rail that did not read makes no total, not a smaller one
    # a rail the family does not list might be an input: no sum, and the reason says what to pin
    extra = choose([*rails, rail("VDD_MYSTERY")], [], None, NOWHERE)
    assert extra.kind is None and "pin sensors.power_total" in extra.why


def test_never_adds_an_input_rail_to_its_branches_whatever_the_mix():
    """Generated rail sets from every family, mixed with each other and with unknown rails: the total
    is never a sum that holds a known input rail, unless the profile says `sum`."""
    inputs = {i.upper() for f in BOARD_FAMILIES for i in f.inputs}
    names = sorted({r for f in BOARD_FAMILIES for r in (*f.inputs, *f.branches)} | {"VDD_X", "RAIL_7", "5V_SYS"})
    rnd = random.Random(7)
    for _ in range(3000):
        picked = [rail(n) for n in rnd.sample(names, rnd.randint(1, 8))]
        c = choose(picked, [], None, NOWHERE)
        if c.kind == "sum":
            labels = {r["label"].upper() for r in picked}
            assert not labels & inputs, labels
        if c.kind == "rail" and any(r["label"].upper() in inputs for r in picked):
            chosen = next(r for r in picked if r["channel"] == c.channels[0])
            assert chosen["label"].upper() in inputs


def test_vin_sys_5v0_alone_is_never_taken_for_the_input():
    assert choose([rail("VIN_SYS_5V0"), rail("VDD_X")], [], None, NOWHERE).kind is None


def test_unidentified_board_takes_a_known_input_name_and_says_so():
    c = choose([rail("FOO", "ina226", "ina2xx"), rail("VIN", "ina226", "ina2xx")], [], None, NOWHERE)
    assert c.channels == ("power.vin_w",) and c.rule == "input rail by name"
    assert "not identified" in c.why and c.method == "ina226"


# --- the device tree ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", BOARD_FAMILIES, ids=lambda f: f.name)
def test_device_tree_model_identifies_the_family_even_with_one_rail(tmp_path, family):
    root = dt(
        tmp_path, model=f"NVIDIA {family.models[0].title()} Developer Kit", compatible=["nvidia,p0000", family.soc]
    )
    b = identify_board(root, [rail(family.branches[0])])
    assert b["family"] == family.name and "device-tree model" in b["by"] and family.soc in b["by"]


def test_device_tree_soc_separates_families_with_the_same_rail_names(tmp_path):
    rails = [rail("VDD_IN"), rail("VDD_SOC")]  # Orin Nano, Xavier NX and TX2 NX all print these
    assert identify_board(NOWHERE, rails)["family"] is None  # ambiguous without a device tree
    for soc, name in (("nvidia,tegra234", "Jetson Orin NX / Orin Nano"), ("nvidia,tegra194", "Jetson Xavier NX")):
        root = dt(tmp_path / soc, compatible=["nvidia,p3768-0000+p3767-0005", soc])
        assert identify_board(root, rails)["family"] == name
    # an unidentified board with an input-named rail still gets it, by name
    assert choose(rails, [], None, NOWHERE).rule == "input rail by name"


def test_a_non_jetson_device_tree_matches_no_family(tmp_path):
    root = dt(tmp_path, model="Raspberry Pi 5 Model B Rev 1.0", compatible=["raspberrypi,5-model-b", "brcm,bcm2712"])
    assert identify_board(root, [rail("VDD_CORE", "pmic")])["family"] is None


# --- the profile's pin wins, whatever probe offers the rail -----------------------------------------


@pytest.mark.parametrize("spelling", ["VDD_SOC", "vdd_soc", "Vdd_Soc", "power.vdd_soc_w"])
def test_pin_by_label_any_case_or_channel(spelling):
    c = choose([rail("VDD_IN"), rail("VDD_SOC"), rail("VDD_CPU_GPU_CV")], [], spelling, NOWHERE)
    assert (c.kind, c.channels, c.rule) == ("rail", ("power.vdd_soc_w",), "profile pin")


def test_pin_reaches_a_rail_that_only_a_later_probe_offers():
    rails = [rail("VDD_IN", "ina3221", "ina2xx"), rail("VDD_SOC", "ina3221", "ina2xx"), rail("VDD_CARRIER")]
    c = choose(rails, [{"probe": "rapl", "method": "rapl", "note": "cpu"}], "VDD_CARRIER", NOWHERE)
    assert c.channels == ("power.vdd_carrier_w",) and c.method == "tegrastats" and c.rule == "profile pin"


def test_pin_names_a_probe_total_or_sum():
    offers = [
        {"probe": "android_battery", "method": "battery", "note": "|I| x V"},
        {"probe": "nvml", "method": "nvml", "note": "gpus"},
    ]
    c = choose([], offers, "nvml", NOWHERE)
    assert (c.kind, c.probe, c.method) == ("probe", "nvml", "nvml")
    assert c.total_w({}, {"nvml": 80.0, "android_battery": 2.0}) == 80.0
    s = choose([rail("A"), rail("B")], [], "sum", NOWHERE)
    assert s.kind == "sum" and s.rule == "profile pin" and s.total_w({"power.a_w": 1.0, "power.b_w": 2.5}, {}) == 3.5


def test_a_pin_that_names_nothing_gives_no_total_rather_than_another():
    c = choose([rail("VDD_IN"), rail("VDD_SOC")], [], "POM_5V_IN", NOWHERE)
    assert c.kind is None and c.to_json()["power_total"] is None
    assert "POM_5V_IN is not among" in c.why and "VDD_IN" in c.why


# --- device totals ---------------------------------------------------------------------------------


def test_device_totals_in_probe_order_when_there_is_no_rail():
    offers = [
        {"probe": "vcgencmd", "method": "pmic", "note": "sum of PMIC rails"},
        {"probe": "rapl", "method": "rapl", "note": "x"},
    ]
    c = choose([rail("VDD_CORE", "pmic", "vcgencmd")], offers, None, NOWHERE)
    assert (c.kind, c.method, c.rule) == ("probe", "pmic", "device total")
    assert choose([], [], None, NOWHERE).why == "no power rail or power sensor found"


def test_a_jetson_input_rail_wins_over_a_device_total():
    offers = [{"probe": "nvml", "method": "nvml", "note": "x"}]
    assert choose([rail("POM_5V_IN"), rail("POM_5V_GPU")], offers, None, NOWHERE).channels == ("power.pom_5v_in_w",)


def test_choice_json_shape():
    j = Choice("rail", ("power.vdd_in_w",), method="ina3221", rule="board input rail", why="w").to_json()
    assert j == {"power_total": "power.total_w", "power_method": "ina3221", "power_rule": "board input rail: w",
                 "power_sources": ["power.vdd_in_w"], "board": None}  # fmt: skip


def test_identification_is_stable_under_rail_order():
    for family in BOARD_FAMILIES:
        names = [*family.inputs, *family.branches]
        results = {
            identify_board(NOWHERE, [rail(n) for n in p])["family"]
            for p in itertools.islice(itertools.permutations(names), 24)
        }
        assert len(results) == 1
