"""Parse NVIDIA Jetson `tegrastats` lines into channels in SI-derived units (standard library only).

The forms, from NVIDIA's own tables of what tegrastats reports (Tegra Linux Driver Package
Development Guide, "tegrastats Utility", L4T 21-32; Jetson Linux Developer Guide, "tegrastats
Utility", r34-r38; DRIVE OS "Reported Statistics") and from lines boards have printed since L4T 21:

=============================  =============================================================
``RAM u/tMB (lfb NxSMB)``      memory in use / total; the largest-free-block group is ignored
``SWAP u/tMB (cached cMB)``    swap in use / total, and cached swap
``IRAM u/tkB(lfb skB)``        video engine memory (the group may be glued to the number)
``CPU [x%@f,x%@f,...]``        per-core load and clock (L4T 28+); a core may print ``off``
``cpu [x%,x%,...]@f``          L4T 21 (TK1) and early TX1: one clock after the bracket for every core
``EMC x%@f`` / ``EMC_FREQ x%`` memory controller load (and clock); ``_FREQ`` names from L4T 24
``GR3D x%@f`` / ``GR3D_FREQ``  GPU load and clock; ``x%@[f,f]`` per GPC (Orin), ``@[f,f,f]`` (Thor)
``NAME f`` / ``NAME off``      an engine's clock in MHz (APE, NVENC, NVDEC, MSENC, VDE, ...)
``NAME x%@f``                  an engine's load and clock (VIC, AVP, NVDLA0, PVA0_FREQ, ...)
``MTS fg x% bg y%``            Denver's MTS foreground / background load (TX2, AGX Xavier)
``zone@tC``                    a thermal zone; JetPack 7 prints ``zone@t1C/t2C`` (t1 is taken)
``RAIL cur/avg``               a power rail in mW: no unit before JetPack 5, ``curmW/avgmW`` from
                               JetPack 5, ``cur/avg/max`` (mW) from JetPack 6
=============================  =============================================================

A clock of ``-1`` means unknown: the load is kept, the clock is not (never -1 MHz). A ``-256C``
zone is offline and a ``PMIC@100C`` zone is a fixed placeholder (the PMIC has only a thermal alarm;
jetson_stats drops it too): both are listed in `dropped`, never read as temperatures.

The parser walks the tokens with bounded, anchored patterns, one field at a time: a token it does
not understand is listed alone in `skipped` and the walk goes on with the next token, so an unknown
or unclosed field never hides the fields after it. A line with no recognisable field at all raises
TegraParseError. Which rail is the board's input is not decided here: see power_rails.py.
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
    skipped: list[str] = field(default_factory=list)  # tokens not understood, each alone, in line order
    timestamp: str | None = None  # the "MM-DD-YYYY HH:MM:SS" prefix when present
    dropped: list[str] = field(default_factory=list)  # understood but dropped: offline/placeholder zones
    dropped_why: dict[str, str] = field(default_factory=dict)  # dropped token -> why it is not a reading
    forms: list[str] = field(default_factory=list)  # which documented forms the line used, in order

    @property
    def form(self) -> str:
        """The line's form in a few words ("CPU [x%@f]; EMC_FREQ; rails mW cur/avg"), for reports."""
        return "; ".join(self.forms) or "no known field"


IGNORED_RAILS = frozenset({"NC"})  # unconnected INA3221 channels, printed as "NC 0/0" (often twice)
PLAUSIBLE_C = (-40.0, 150.0)  # outside: an offline zone (-256C) or a broken sensor
PLACEHOLDER_ZONES = {"PMIC": 100.0}  # zone -> the fixed value it prints instead of a reading

_DATE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})(?:\s+|$)")
_NUM = r"\d{1,7}(?:\.\d{1,6})?"
_PCT = r"\d{1,3}(?:\.\d{1,3})?"
_CLOCK = r"-?\d{1,7}"  # MHz; -1 is "unknown"
_MEM = re.compile(r"^(\d{1,9})/(\d{1,9})(kB|KB|MB|GB)$")
_GROUP = re.compile(r"^\((lfb|cached)\s+(?:(\d{1,9})x)?(\d{1,9})(kB|KB|MB|GB)\)$")
_CORE = re.compile(rf"^(?:(off)|({_PCT})%(?:@({_CLOCK}))?)$")
_CPU_LIST = re.compile(rf"^\[([^\[\]]{{0,2048}})\](?:@({_CLOCK}))?$")
# an engine's value: "off" | "150" | "31%" | "31%@115" | "@1600" | "84%@[713,713]" | "@[1000,1000]"
_ENGINE_VALUE = re.compile(
    rf"^(?:(off)|({_CLOCK})|(?:({_PCT})%)?(?:@(?:({_CLOCK})|\[({_CLOCK}(?:,{_CLOCK}){{0,15}})\]))?)$"
)
_ENGINE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,23}$")
_ZONE = re.compile(rf"^([A-Za-z][A-Za-z0-9_-]{{0,31}})@(-?{_NUM})C(?:/(-?{_NUM})C)?$")
_RAIL_NAME = re.compile(r"^(?=[A-Za-z0-9_]{0,47}[A-Za-z])[A-Za-z0-9][A-Za-z0-9_]{0,47}$")
_RAIL_VALUE = re.compile(r"^(\d{1,7})(mW)?/(\d{1,7})(mW)?(?:/(\d{1,7})(mW)?)?$")
_MB_PER = {"kB": 1 / 1024, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}
_SOURCES = {"EMC": "emc", "EMC_FREQ": "emc", "GR3D": "gpu", "GR3D_FREQ": "gpu"}
# names that are fields, never engines; never rails either, except CPU: AGX Xavier has a rail named
# CPU ("CPU 310/310"), and the CPU field is recognised by its "[" instead.
_KEYWORDS = frozenset({"RAM", "SWAP", "IRAM", "MTS", "CPU"})
_LIST_MAX_TOKENS = 64  # a "[" not closed within this many tokens is taken alone
_GROUP_MAX_TOKENS = 4  # "(lfb 98x4MB)": a "(" not closed by then is taken alone


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _clock(text: str | None) -> float | None:
    """A clock in MHz, or None when absent or -1 (unknown)."""
    if text is None:
        return None
    mhz = float(text)
    return None if mhz < 0 else mhz


def _cpu(text: str) -> tuple[dict[str, float], str, list[str]] | None:
    """`[6%@102,off,0%]` or `[20%,10%]@518` -> (per-core channels and the mean over online cores,
    the form, the entries not understood); None if the text is not a bracketed list at all.

    An entry not understood is skipped alone (listed as `cpuN:<entry>`); the other cores are kept,
    but then no mean is given: whether that core was online, and how busy, is not known.
    """
    m = _CPU_LIST.match(text)
    if not m:
        return None
    shared = _clock(m.group(2))
    out: dict[str, float] = {}
    utils: list[float] = []
    bad: list[str] = []
    per_core_clock = False
    for i, entry in enumerate(m.group(1).split(",")):
        e = _CORE.match(entry.strip())
        if not e:
            bad.append(f"cpu{i}:{entry.strip()}")
            continue
        if e.group(1):  # off: powered down, not 0 % and not in the mean
            continue
        util = float(e.group(2))
        out[f"cpu{i}.util_pct"] = util
        utils.append(util)
        if e.group(3) is not None:
            per_core_clock = True
        mhz = _clock(e.group(3)) if e.group(3) is not None else shared
        if mhz is not None:
            out[f"cpu{i}.freq_mhz"] = mhz
    if per_core_clock and m.group(2) is not None:
        return None  # a clock per core and one after the bracket: no documented form has both
    if utils and not bad:
        out["cpu.util_pct"] = _mean(utils)
    form = "[x%]@f" if m.group(2) is not None else "[x%@f]" if per_core_clock else "[x%]"
    return out, form, bad


def _engine(token: str, source: str) -> dict[str, float] | None:
    """An engine's value token -> `<source>.util_pct` / `<source>.freq_mhz`; None if malformed."""
    m = _ENGINE_VALUE.match(token)
    if not m or not token:
        return None
    off, bare, util, clock, clocks = m.groups()
    if off:
        return {}  # powered down: no load, no clock
    out: dict[str, float] = {}
    if util is not None:
        out[f"{source}.util_pct"] = float(util)
    mhz = _clock(bare if bare is not None else clock)
    if clocks is not None:  # one clock per GPC: their mean, leaving out unknown (-1) ones
        known = [c for c in (_clock(f) for f in clocks.split(",")) if c is not None]
        mhz = _mean(known) if known else None
    if mhz is not None:
        out[f"{source}.freq_mhz"] = mhz
    if not out and bare is None and clock is None and clocks is None:
        return None  # an empty token, or "%" forms without a number
    return out


def _engine_source(name: str) -> str:
    """`NVDLA0_FREQ` -> `nvdla0`, `GR3D_FREQ` -> `gpu`, `EMC` -> `emc`."""
    return _SOURCES.get(name) or (name[: -len("_FREQ")] if name.endswith("_FREQ") else name).lower()


def _take_until(tokens: list[str], i: int, closer: str, limit: int) -> int | None:
    """Index after the token that holds `closer`, looking at most `limit` tokens from i; None if the
    field is not closed by then, or another field of the same kind opens first."""
    opener = {")": "(", "]": "["}[closer]
    for j in range(i, min(i + limit, len(tokens))):
        if j > i and opener in tokens[j]:
            return None
        if closer in tokens[j]:
            return j + 1
    return None


def _form(sample: TegraSample, text: str) -> None:
    if text not in sample.forms:
        sample.forms.append(text)


def parse_line(line: str) -> TegraSample:
    """One tegrastats line -> TegraSample (channels in %, MHz, MB, C and W).

    Raises TegraParseError if no field is recognisable. Rails are in `rails` (W, as printed by
    name) and as `power.<rail>_w` channels; `power.total_w` is chosen elsewhere (power_rails.py).
    """
    if not isinstance(line, str):
        raise TegraParseError(f"expected a text line, got {type(line).__name__}")
    sample = TegraSample()
    text = line.strip()
    m = _DATE.match(text)
    if m:
        sample.timestamp = m.group(1)
        text = text[m.end() :]
        _form(sample, "dated")
    # "IRAM 0/252kB(lfb 252kB)": a group glued to its number is still its own token
    tokens = re.sub(r"(?<=\S)\(", " (", text).split()
    values = sample.values
    recognised = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None

        if tok.startswith("("):
            end = _take_until(tokens, i, ")", _GROUP_MAX_TOKENS)
            group = " ".join(tokens[i:end]) if end else tok
            g = _GROUP.match(group)
            if g and g.group(1) == "cached" and g.group(2) is None:
                values["swap.cached_mb"] = float(g.group(3)) * _MB_PER[g.group(4)]
            elif not g:
                sample.skipped.append(group if end else tok)
            # a closed group is one token (fields never sit inside parentheses); an unclosed "(" is
            # taken alone, so it cannot swallow the fields after it
            i = end if end else i + 1
            continue

        if tok in ("RAM", "SWAP", "IRAM") and nxt is not None:
            mm = _MEM.match(nxt)
            if mm:
                scale = _MB_PER[mm.group(3)]
                key = {"RAM": "mem", "SWAP": "swap", "IRAM": "iram"}[tok]
                values[f"{key}.used_mb"] = float(mm.group(1)) * scale
                values[f"{key}.total_mb"] = float(mm.group(2)) * scale
                recognised += 1
                i += 2
                continue

        if tok in ("CPU", "cpu") and nxt is not None and nxt.startswith("["):
            end = _take_until(tokens, i + 1, "]", _LIST_MAX_TOKENS)
            parsed = _cpu("".join(tokens[i + 1 : end])) if end else None
            if parsed is not None:
                values.update(parsed[0])
                _form(sample, f"{tok} {parsed[1]}")
                sample.skipped += parsed[2]
                recognised += 1
                i = end
            else:  # the keyword alone: a list not closed or not understood is not guessed at, and the
                # tokens after the keyword get their own chance (an unclosed "[" swallows nothing)
                sample.skipped.append(tok)
                i += 1
            continue

        if tok == "MTS" and i + 4 < len(tokens) and tokens[i + 1] == "fg" and tokens[i + 3] == "bg":
            fg, bg = re.match(rf"^({_PCT})%$", tokens[i + 2]), re.match(rf"^({_PCT})%$", tokens[i + 4])
            if fg and bg:
                values["mts.fg_pct"], values["mts.bg_pct"] = float(fg.group(1)), float(bg.group(1))
                recognised += 1
                i += 5
                continue

        mz = _ZONE.match(tok)
        if mz:
            name, celsius = mz.group(1), float(mz.group(2))
            _form(sample, "zone@t1C/t2C" if mz.group(3) else "zone@tC")
            recognised += 1
            if PLACEHOLDER_ZONES.get(name.upper()) == celsius:
                sample.dropped.append(tok)
                sample.dropped_why[tok] = f"a fixed {celsius:g} C placeholder, not a temperature"
            elif not PLAUSIBLE_C[0] <= celsius <= PLAUSIBLE_C[1]:
                sample.dropped.append(tok)
                sample.dropped_why[tok] = (
                    f"outside {PLAUSIBLE_C[0]:g}..{PLAUSIBLE_C[1]:g} C: an offline zone or a broken sensor"
                )
            else:
                values[f"temp.{name.lower().replace('-', '_')}_c"] = celsius
            i += 1
            continue

        if nxt is not None and (tok not in _KEYWORDS or tok == "CPU") and _RAIL_NAME.match(tok):
            mr = _RAIL_VALUE.match(nxt)
            if mr:
                units = {u for u in mr.group(2, 4, 6) if u}
                _form(sample, ("rails mW " if units else "rails ") + ("cur/avg/max" if mr.group(5) else "cur/avg"))
                recognised += 1
                if tok.upper() not in IGNORED_RAILS:
                    watts = int(mr.group(1)) / 1000.0
                    sample.rails[tok] = watts
                    values[f"power.{tok.lower()}_w"] = watts
                i += 2
                continue

        if nxt is not None and tok not in _KEYWORDS and _ENGINE_NAME.match(tok):
            parsed = _engine(nxt, _engine_source(tok))
            if parsed is not None:
                if tok in _SOURCES:
                    _form(sample, tok)
                values.update(parsed)
                recognised += 1
                i += 2
                continue

        sample.skipped.append(tok)
        i += 1

    if recognised == 0:
        shown = line.strip()
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise TegraParseError(f"not a tegrastats line (no recognisable field): {shown!r}")
    return sample


def tegrastats_command(binary: str, interval_ms: int) -> list[str]:
    """argv for a tegrastats that prints one line every interval_ms."""
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
        raise ValueError(f"interval_ms must be a positive integer, got {interval_ms!r}")
    return [binary, "--interval", str(interval_ms)]
