"""Parse NVIDIA Jetson `tegrastats` lines into channels in SI-derived units (standard library only).

One line per interval, fields separated by spaces, and the set of fields differs by board and
JetPack. The parser walks the tokens: a token it knows becomes channels, a token it does not know
is listed in `skipped` and the walk goes on, so an unknown field never hides the fields after it.
A line with no recognisable field at all raises TegraParseError.

Power rails print `NAME cur/avg` or `NAME cur/avg/max`, in mW with or without the `mW` unit. Which
rail is the board's input differs per board: see board_input_rail().
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class TegraParseError(ValueError):
    """A line that is not a tegrastats line at all."""


@dataclass
class TegraSample:
    values: dict[str, float] = field(default_factory=dict)  # channel -> value, e.g. "gpu.util_pct"
    rails: dict[str, float] = field(default_factory=dict)  # rail name as printed -> current W
    skipped: list[str] = field(default_factory=list)  # tokens not understood, in line order
    timestamp: str | None = None  # the "MM-DD-YYYY HH:MM:SS" prefix when present
    dropped: list[str] = field(default_factory=list)  # understood but dropped: offline/absurd zones


# The board-input rail where a board has one, in order of preference. Nano: POM_5V_IN. TX1, TX2,
# TX2 NX, Xavier NX, Orin Nano / Orin NX: VDD_IN. Xavier NX documentation names it 5V_IN.
# AGX Xavier (GPU CPU SOC CV VDDRQ SYS5V) and AGX Orin (VDD_GPU_SOC VDD_CPU_CV VIN_SYS_5V0
# VDDQ_VDD2_1V8AO) have no input rail: their rails are parallel branches, so the total is the sum.
# VIN_SYS_5V0 is deliberately absent: on AGX Orin it is the 5 V system branch (a few W while
# VDD_CPU_CV alone reads 14 W), not the board input.
BOARD_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "5V_IN")
IGNORED_RAILS = frozenset({"NC"})  # unconnected INA3221 channels, printed as "NC 0/0" (often twice)
PLAUSIBLE_C = (-40.0, 150.0)  # outside: an offline zone (-256C) or a broken sensor

METHOD_PROFILE = "profile"
METHOD_KNOWN = "known board input rail"
METHOD_SUM = "sum of rails (no board input rail on this board)"
METHOD_NONE = "no power rails in the line"

_DATE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})(?:\s+|$)")
_MEM = re.compile(r"^(\d+)/(\d+)(kB|KB|MB|GB)$")
_CPU_CORE = re.compile(r"^(\d+(?:\.\d+)?)%(?:@(\d+(?:\.\d+)?))?$")
_UTIL_FREQ = re.compile(r"^(\d+(?:\.\d+)?)%(?:@(\d+(?:\.\d+)?))?$")
_UTIL_FREQS = re.compile(r"^(\d+(?:\.\d+)?)%@\[(\d+(?:\.\d+)?(?:,\d+(?:\.\d+)?)*)\]$")
_ZONE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)@(-?\d+(?:\.\d+)?)C$")
_RAIL_NAME = re.compile(r"^(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_]*$")
_RAIL_VALUE = re.compile(r"^(\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?$")
_MB_PER = {"kB": 1 / 1024, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}

# names that are fields, never rails, even when followed by something rail-shaped. Not CPU: AGX
# Xavier has a rail named CPU ("CPU 310/310"); the CPU field is recognised by its "[" instead.
_KEYWORDS = frozenset({"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ"})
_GROUP_MAX_TOKENS = 4  # "(lfb 98x4MB)", "(cached 3MB)": a "(" not closed by then is a lone token


def _num(text: str) -> float:
    return float(text)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _parse_cpu_list(token: str) -> dict[str, float] | None:
    """`[6%@102,off,0%]` -> per-core channels and the mean over online cores; None if malformed."""
    if not (token.startswith("[") and token.endswith("]")) or len(token) < 3:
        return None
    out: dict[str, float] = {}
    utils: list[float] = []
    for i, entry in enumerate(token[1:-1].split(",")):
        entry = entry.strip()
        if entry.lower() == "off":
            continue
        m = _CPU_CORE.match(entry)
        if not m:
            return None
        util = _num(m.group(1))
        out[f"cpu{i}.util_pct"] = util
        utils.append(util)
        if m.group(2) is not None:
            out[f"cpu{i}.freq_mhz"] = _num(m.group(2))
    if utils:
        out["cpu.util_pct"] = _mean(utils)
    return out


def _parse_util_freq(token: str, source: str, allow_list: bool) -> dict[str, float] | None:
    """`84%`, `84%@713`, and with allow_list `84%@[713,713]` (per-GPC: the mean frequency)."""
    m = _UTIL_FREQ.match(token)
    if m:
        out = {f"{source}.util_pct": _num(m.group(1))}
        if m.group(2) is not None:
            out[f"{source}.freq_mhz"] = _num(m.group(2))
        return out
    if allow_list:
        m = _UTIL_FREQS.match(token)
        if m:
            freqs = [_num(f) for f in m.group(2).split(",")]
            return {f"{source}.util_pct": _num(m.group(1)), f"{source}.freq_mhz": _mean(freqs)}
    return None


def _take_group(tokens: list[str], i: int) -> tuple[str, int]:
    """A parenthesised group starting in tokens[i], e.g. `(lfb 98x4MB)`: (joined text, next index).

    A "(" not closed within a few tokens is taken alone, so it cannot swallow the fields after it.
    """
    for j in range(i, min(i + _GROUP_MAX_TOKENS, len(tokens))):
        if ")" in tokens[j]:
            return " ".join(tokens[i : j + 1]), j + 1
    return tokens[i], i + 1


def parse_line(line: str) -> TegraSample:
    """One tegrastats line -> TegraSample. Raises TegraParseError if no field is recognisable.

    `power.total_w` is not set here: which rail is the total depends on the profile, so the
    caller asks total_power_w(sample, pinned).
    """
    if not isinstance(line, str):
        raise TegraParseError(f"expected a text line, got {type(line).__name__}")
    sample = TegraSample()
    text = line.strip()
    m = _DATE.match(text)
    if m:
        sample.timestamp = m.group(1)
        text = text[m.end() :]
    tokens = text.split()
    values = sample.values
    recognised = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None

        if "(" in tok:
            group, i = _take_group(tokens, i)
            sample.skipped.append(group)
            continue

        if tok in ("RAM", "SWAP") and nxt is not None:
            mm = _MEM.match(nxt)
            if mm:
                scale = _MB_PER[mm.group(3)]
                key = "mem" if tok == "RAM" else "swap"
                values[f"{key}.used_mb"] = _num(mm.group(1)) * scale
                values[f"{key}.total_mb"] = _num(mm.group(2)) * scale
                recognised += 1
                i += 2
                continue

        if tok in ("CPU", "cpu") and nxt is not None and nxt.startswith("["):
            # the list is one token; be lenient if a firmware ever puts spaces inside the brackets
            j = i + 1
            while j < len(tokens) - 1 and not tokens[j].endswith("]"):
                j += 1
            cpu = _parse_cpu_list("".join(tokens[i + 1 : j + 1]))
            if cpu is not None:
                values.update(cpu)
                recognised += 1
            else:
                sample.skipped.append(" ".join(tokens[i : j + 1]))
            i = j + 1
            continue

        if tok in ("EMC_FREQ", "EMC", "GR3D_FREQ", "GR3D") and nxt is not None:
            source = "emc" if tok.startswith("EMC") else "gpu"
            parsed = _parse_util_freq(nxt, source, allow_list=source == "gpu")
            if parsed is not None:
                values.update(parsed)
                recognised += 1
                i += 2
                continue

        mz = _ZONE.match(tok)
        if mz:
            celsius = _num(mz.group(2))
            if PLAUSIBLE_C[0] <= celsius <= PLAUSIBLE_C[1]:
                values[f"temp.{mz.group(1).lower().replace('-', '_')}_c"] = celsius
                recognised += 1
            else:
                sample.dropped.append(tok)
            i += 1
            continue

        if nxt is not None and tok not in _KEYWORDS and _RAIL_NAME.match(tok):
            mr = _RAIL_VALUE.match(nxt)
            if mr:
                recognised += 1
                if tok.upper() not in IGNORED_RAILS:
                    watts = int(mr.group(1)) / 1000.0
                    sample.rails[tok] = watts
                    values[f"power.{tok.lower()}_w"] = watts
                i += 2
                continue

        sample.skipped.append(tok)
        i += 1

    if recognised == 0:
        shown = line.strip()
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise TegraParseError(f"not a tegrastats line (no recognisable field): {shown!r}")
    return sample


def board_input_rail(rails: list[str], pinned: str | None = None) -> tuple[str | None, str]:
    """Which rail is the board input: (rail as printed, method), or (None, method) for the sum.

    The profile's pinned rail wins when it is present (case-insensitive); a pinned rail that is
    absent falls through to the known-board table, then to the sum of rails.
    """
    by_upper = {r.upper(): r for r in rails if r.upper() not in IGNORED_RAILS}
    if pinned and pinned.upper() in by_upper:
        return by_upper[pinned.upper()], METHOD_PROFILE
    for known in BOARD_INPUT_RAILS:
        if known in by_upper:
            return by_upper[known], METHOD_KNOWN
    return None, METHOD_SUM


def total_power_w(sample: TegraSample, pinned: str | None = None) -> tuple[float | None, str]:
    """Board power in W and how it was obtained; (None, reason) when the line had no rails."""
    if not sample.rails:
        return None, METHOD_NONE
    rail, method = board_input_rail(list(sample.rails), pinned)
    if rail is not None:
        return sample.rails[rail], method
    return sum(sample.rails.values()), method


def tegrastats_command(binary: str, interval_ms: int) -> list[str]:
    """argv for a tegrastats that prints one line every interval_ms."""
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
        raise ValueError(f"interval_ms must be a positive integer, got {interval_ms!r}")
    return [binary, "--interval", str(interval_ms)]
