"""Which channel is the device's total power: one decision, taken once, after every probe has detected.

Probes only report what they measure: rails (`power.<rail>_w`, from INA2xx monitors, tegrastats,
the Pi 5 PMIC) and, where a probe measures a whole device, its own total (battery, PMIC sum,
NVML, RAPL). choose() decides, in this order, and says which rule chose:

1. the profile's pin `sensors.power_total`: a rail as labelled or printed (any case), a channel
   name, `sum` (every rail is a parallel branch: the user says so) or a probe's own total
   (`battery`, `pmic`, `nvml`, `rapl`). A pin that names nothing here gives no total, with the
   reason: the pin wins over every rule, so it is never replaced by a guess;
2. the board's input rail, from the table of board families below (the family is identified by
   the rails it prints, with the device tree's `compatible` and `model` where readable);
3. where the board is not identified, a rail whose name is some family's input rail;
4. the sum of the rails, only where the identified family has no input rail and every rail seen
   is one of its parallel branches (an input rail is never added to its own branches);
5. a probe's own device total, in the registry's order;
6. otherwise none: rails alone cannot say which one is the input, and the reason says what to pin.

Standard library only: this runs on the device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

RULE_PIN = "profile pin"
RULE_INPUT = "board input rail"
RULE_INPUT_BY_NAME = "input rail by name"
RULE_SUM = "sum of branch rails"
RULE_PROBE = "device total"
RULE_NONE = "none"


@dataclass(frozen=True)
class BoardFamily:
    """A board family's power monitors: which rail is the input, which rails are its branches.

    Rail names are as tegrastats prints them and as the INA3221 channels are labelled in sysfs
    (the two agree). `unlabelled` maps a monitor chip that has no label in sysfs to the rail it
    measures on this family. `source` says where the names were taken from.
    """

    name: str
    soc: str  # the SoC's device-tree compatible string
    inputs: tuple[str, ...]
    branches: tuple[str, ...]
    source: str
    models: tuple[str, ...] = ()  # lower-case substrings of the device tree's model
    unlabelled: tuple[tuple[str, str], ...] = ()
    sum_of_branches: bool = False  # no input rail: the branches are parallel and sum to the module's draw

    def rails(self) -> set[str]:
        return {r.upper() for r in (*self.inputs, *self.branches)} | {rail for _, rail in self.unlabelled}


_L4T32 = "https://docs.nvidia.com/jetson/archives/l4t-archived/l4t-3275/"
_R35 = "https://docs.nvidia.com/jetson/archives/r35.6.0/DeveloperGuide/SD/PlatformPowerAndPerformance/"
BOARD_FAMILIES: tuple[BoardFamily, ...] = (
    BoardFamily(
        "Jetson Nano", "nvidia,tegra210", ("POM_5V_IN",), ("POM_5V_GPU", "POM_5V_CPU"),
        f"{_L4T32} Power Management for Jetson Nano (INA3221 at 0x40); tegrastats line in shared/samples",
        models=("jetson nano", "jetson-nano"),
    ),
    BoardFamily(
        "Jetson TX2", "nvidia,tegra186", ("VDD_IN",),
        ("VDD_CPU", "VDD_GPU", "VDD_SOC", "VDD_WIFI", "VDD_DDR", "VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI",
         "VDD_SYS_CPU", "VDD_SYS_DDR"),
        "L4T 28 Power Management for TX2 (module INA3221 at 0x40, 0x41: VDD_IN is the module input; the "
        "carrier's VDD_MUX also feeds the carrier and is not the module's draw); tegrastats line in shared/samples",
        models=("quill", "jetson tx2", "jetson-tx2"),
    ),  # fmt: skip
    BoardFamily(
        "Jetson TX2 NX", "nvidia,tegra186", ("VDD_IN",), ("VDD_CPU_GPU", "VDD_SOC"),
        f"{_L4T32} Power Management for Jetson TX2 NX", models=("tx2 nx", "lanai"),
    ),
    BoardFamily(
        "Jetson Xavier NX", "nvidia,tegra194", ("VDD_IN", "5V_IN"), ("VDD_CPU_GPU_CV", "VDD_SOC"),
        f"{_L4T32}power_management_jetson_xavier.html (Xavier NX: INA3221 at 0x40; older releases print 5V_IN)",
        models=("xavier nx",),
    ),
    BoardFamily(
        "Jetson AGX Xavier", "nvidia,tegra194", (), ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"),
        f"{_L4T32}power_management_jetson_xavier.html (AGX Xavier: INA3221 at 0x40 and 0x41, six parallel "
        "rails and no input rail)",
        models=("agx xavier", "jetson-agx"), sum_of_branches=True,
    ),  # fmt: skip
    BoardFamily(
        "Jetson Orin NX / Orin Nano", "nvidia,tegra234", ("VDD_IN",), ("VDD_CPU_GPU_CV", "VDD_SOC"),
        f"{_R35}JetsonOrinNanoSeriesJetsonOrinNxSeriesAndJetsonAgxOrinSeries.html (INA3221 at 0x40); "
        "tegrastats line in shared/samples",
        models=("orin nano", "orin nx"),
    ),
    BoardFamily(
        "Jetson AGX Orin", "nvidia,tegra234", (), ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"),
        f"{_R35}JetsonOrinNanoSeriesJetsonOrinNxSeriesAndJetsonAgxOrinSeries.html (AGX Orin: INA3221 at 0x40 and "
        "0x41, parallel rails and no input rail; VIN_SYS_5V0 is the 5 V system branch, a few W)",
        models=("agx orin",), sum_of_branches=True,
    ),  # fmt: skip
    BoardFamily(
        "Jetson AGX Thor", "nvidia,tegra264", ("VIN",), ("VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"),
        "NVIDIA developer forum, 'Question about power monitor with additional load on Jetson Thor' (the INA238 "
        "measures the total VIN power; the INA3221 rails are branches); JetPack 7 tegrastats prints VIN",
        models=("thor",), unlabelled=(("ina238", "VIN"),),
    ),
)  # fmt: skip
MIN_EVIDENCE = 2  # one rail name alone (a custom board's "VIN") does not make a board a Jetson
INPUT_RAIL_NAMES = tuple(dict.fromkeys(r.upper() for f in BOARD_FAMILIES for r in f.inputs))
PIN_SUM = "sum"


@dataclass
class Choice:
    """The decision: `kind` rail | sum | probe | None; the rail channels it reads, or the probe whose
    own total it takes; `method` (power_method: ina3221, ina238, tegrastats, pmic, battery, nvml,
    rapl, none) and `rule` (which rule chose, in words, with its source)."""

    kind: str | None
    channels: tuple[str, ...] = ()
    probe: str | None = None
    method: str = "none"
    rule: str = RULE_NONE
    why: str = ""
    board: dict | None = None

    def to_json(self) -> dict:
        return {
            "power_total": "power.total_w" if self.kind else None,
            "power_method": self.method,
            "power_rule": f"{self.rule}: {self.why}" if self.why else self.rule,
            "power_sources": list(self.channels) or ([f"{self.probe}: power.total_w"] if self.probe else []),
            "board": self.board,
        }

    def total_w(self, values: dict[str, float], probe_totals: dict[str, float | None]) -> float | None:
        """power.total_w for one sample: the rail, the sum of the rails (all of them read, or none),
        or the chosen probe's own total."""
        if self.kind == "rail":
            return values.get(self.channels[0])
        if self.kind == "sum":
            parts = [values.get(c) for c in self.channels]
            return None if any(p is None for p in parts) else sum(parts)
        if self.kind == "probe":
            return probe_totals.get(self.probe)
        return None


def _read_dt(root: str, name: str) -> list[str]:
    """A device-tree property as its NUL-separated strings ([] where there is no device tree)."""
    for base in ("proc/device-tree", "sys/firmware/devicetree/base"):
        try:
            with open(os.path.join(root, base, name), "rb") as f:
                return [s.decode("ascii", "replace").strip() for s in f.read().split(b"\0") if s.strip()]
        except OSError:
            continue
    return []


def identify_board(root: str, rails: list[dict]) -> dict:
    """The board family from its rails and device tree: {"family", "by", "model", "compatible",
    "source"}; family None when no family fits, or two fit equally well."""
    model = " ".join(_read_dt(root, "model"))
    compatible = _read_dt(root, "compatible")
    labels = {r["label"].upper() for r in rails if r.get("labelled", True)}
    chips = {r.get("chip") for r in rails if not r.get("labelled", True)}
    candidates = [f for f in BOARD_FAMILIES if not compatible or f.soc in compatible]
    scored = []
    for f in candidates:
        rail_hits = sorted(labels & f.rails())
        chip_hits = sorted(chip for chip, _ in f.unlabelled if chip in chips)
        by_model = any(m in model.lower() for m in f.models) if model else False
        by_soc = f.soc in compatible
        score = len(rail_hits) + len(chip_hits) + (1 if by_soc else 0) + (10 if by_model else 0)
        scored.append((score, f, rail_hits, chip_hits, by_model))
    scored.sort(key=lambda s: -s[0])
    out = {"family": None, "by": None, "model": model or None, "compatible": compatible or None, "source": None}
    if not scored or scored[0][0] < MIN_EVIDENCE:
        out["by"] = "no family's rails or model seen" if not scored or not scored[0][0] else "too little evidence"
        return out
    if len(scored) > 1 and scored[1][0] == scored[0][0]:
        out["by"] = f"ambiguous: {scored[0][1].name} and {scored[1][1].name} fit equally"
        return out
    _, family, rail_hits, chip_hits, by_model = scored[0]
    evidence = []
    if by_model:
        evidence.append(f"device-tree model {model!r}")
    if rail_hits:
        evidence.append("rails " + ", ".join(rail_hits))
    if chip_hits:
        evidence.append("unlabelled " + ", ".join(chip_hits))
    if compatible:
        evidence.append(family.soc)
    out.update(family=family.name, by="; ".join(evidence), source=family.source)
    return out


def _family(name: str | None) -> BoardFamily | None:
    return next((f for f in BOARD_FAMILIES if f.name == name), None)


def _rail_choice(rail: dict, rule: str, why: str, board: dict) -> Choice:
    return Choice("rail", (rail["channel"],), method=rail["method"], rule=rule, why=why, board=board)


def choose(rails: list[dict], offers: list[dict], pinned: str | None, root: str = "/") -> Choice:
    """Decide the total power once for a device.

    rails: every owned rail channel, in probe order: {"channel", "label", "method", "probe",
    "labelled" (False for a monitor with no label), "chip"}. offers: probes' own device totals, in
    probe order: {"probe", "method", "note"}. pinned: the profile's sensors.power_total.
    """
    board = identify_board(root, rails)
    family = _family(board["family"])
    by_label = {}
    for rail in rails:
        by_label.setdefault(rail["label"].upper(), rail)

    # 1. the profile's pin wins, whatever probe offers the rail
    if pinned:
        pin = str(pinned).strip()
        rail = by_label.get(pin.upper()) or next((r for r in rails if r["channel"] == pin), None)
        if rail:
            return _rail_choice(rail, RULE_PIN, f"sensors.power_total = {pin} ({rail['channel']})", board)
        if pin.lower() == PIN_SUM and rails:
            return Choice(
                "sum", tuple(r["channel"] for r in rails), method=rails[0]["method"], rule=RULE_PIN,
                why="sensors.power_total = sum: every rail taken as a parallel branch", board=board,
            )  # fmt: skip
        offer = next((o for o in offers if pin.lower() in (o["probe"], o["method"])), None)
        if offer:
            return Choice("probe", probe=offer["probe"], method=offer["method"], rule=RULE_PIN,
                          why=f"sensors.power_total = {pin}: {offer['note']}", board=board)  # fmt: skip
        seen = ", ".join([r["label"] for r in rails] + [o["method"] for o in offers]) or "none"
        why = (
            f"sensors.power_total = {pin} is not among the rails or totals here ({seen}): no total rather than another"
        )
        return Choice(None, rule=RULE_PIN, why=why, board=board)

    # 2. the identified board's input rail (labelled, or a monitor the table knows by its chip); rails
    # come in probe order, so a monitor read from sysfs wins over the same rail printed by a tool
    if family:
        inputs = {name.upper() for name in family.inputs}
        chips = dict(family.unlabelled)
        for rail in rails:
            if rail.get("labelled", True) and rail["label"].upper() in inputs:
                return _rail_choice(rail, RULE_INPUT, f"{rail['label']} is the input of a {family.name}", board)
            if not rail.get("labelled", True) and rail.get("chip") in chips:
                why = (
                    f"the unlabelled {rail['chip']} ({rail['label']}) measures {chips[rail['chip']]} on a {family.name}"
                )
                return _rail_choice(rail, RULE_INPUT, why, board)

    # 3. a board not identified: a rail whose name is some family's input rail
    if not family:
        for name in INPUT_RAIL_NAMES:
            if name in by_label:
                owner = next(f.name for f in BOARD_FAMILIES if name in (i.upper() for i in f.inputs))
                why = f"{by_label[name]['label']} is the input rail of a {owner}; this board is not identified"
                return _rail_choice(by_label[name], RULE_INPUT_BY_NAME, why, board)

    # 4. no input rail on this family: the sum of its parallel branches, if nothing else is among them
    if family and family.sum_of_branches and rails:
        unknown = sorted(set(by_label) - {b.upper() for b in family.branches})
        if not unknown:
            why = f"a {family.name} has no input rail; " + " + ".join(r["label"] for r in rails)
            return Choice("sum", tuple(r["channel"] for r in rails), method=rails[0]["method"], rule=RULE_SUM,
                          why=why, board=board)  # fmt: skip

    # 5. a probe that measures the whole device
    if offers:
        o = offers[0]
        return Choice("probe", probe=o["probe"], method=o["method"], rule=RULE_PROBE, why=o["note"], board=board)

    # 6. nothing that can honestly be called total power
    if rails:
        labels = ", ".join(r["label"] for r in rails)
        where = (
            f"a {family.name} ({'its input rail is missing' if family.inputs else 'rails not all its own'})"
            if family
            else "an unidentified board"
        )
        return Choice(None, rule=RULE_NONE, board=board,
                      why=f"rails {labels} on {where}: none is known to be the input, and summing could add an input "
                      "to its own branches; pin sensors.power_total to the input rail (or `sum`)")  # fmt: skip
    return Choice(None, rule=RULE_NONE, why="no power rail or power sensor found", board=board)
