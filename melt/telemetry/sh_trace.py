"""The sh sampler's trace (trace.raw.csv + sampler.json, from sampler.sh) -> melt's trace.csv.

sampler.sh runs where there is no Python (phones) and keeps to raw integers, as the files give
them; this turns them into the channels the Python probes write, in the same units: CPU
utilisation from tick deltas, memory in MB, temperatures in C (offline/absurd zones dropped as
thermal.py does), frequencies in MHz, and the battery through android_battery.decide and Plan.read. The sh
sampler keeps no schedule, so `sampler.lag_ms` and `sampler.missed` are empty.

Standard library only (and melt's own telemetry helpers).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter

from melt.telemetry import android_battery
from melt.telemetry.base import channel_name
from melt.telemetry.thermal import plausible

PIN_KEYS = ("current_unit", "voltage_unit", "discharge_sign")
RAW_BATTERY = re.compile(r"battery(\d*)\.(current_raw|voltage_raw|power_raw|temp_raw|status)")
ROW_NOTES = 10  # distinct per-row notes kept in sensors.json, most frequent first
RAW_KEYS = {"current_raw": "current_now", "voltage_raw": "voltage_now", "power_raw": "power_now",
            "temp_raw": "temp", "status": "status"}  # fmt: skip


def convert(raw_csv_path, sampler_json_path, out_csv_path, battery_pins: dict | None = None) -> dict:
    """Write out_csv_path (trace.csv) from the sh sampler's output; return a sensors.json-like dict.

    battery_pins: the device profile's sensors.battery (supply, current_unit, voltage_unit,
    discharge_sign). The battery's units and sign rule are decided once over all rows
    (android_battery.decide), never per row; the decision, its evidence and what each row was
    (discharging, charging, on external power) are the returned probe's notes.
    Raw battery columns: battery<k>.{current,voltage,power,temp}_raw and battery<k>.status per
    supply in sampler.json "batteries" (older samplers: one supply, battery.*, in "battery").
    """
    with open(sampler_json_path, encoding="utf-8") as f:
        meta = json.load(f)
    header, rows = _read_raw(raw_csv_path)
    raw = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    n = len(rows)
    found: list[str] = []
    missing: list[str] = []
    notes: list[str] = []
    columns: dict[str, list] = {}

    def present(name: str) -> bool:
        return any(v != "" for v in raw.get(name, []))

    # procfs: cpu.util_pct from tick deltas, mem, proc.rss
    wrap = 2**32 if meta.get("int_bits") == 32 else None  # mksh's arithmetic wraps at 32 bits
    if present("cpu.busy_ticks") and present("cpu.total_ticks"):
        columns["cpu.util_pct"] = _util(raw["cpu.busy_ticks"], raw["cpu.total_ticks"], wrap)
        found.append("proc/stat")
    else:
        missing.append("proc/stat: not readable, no CPU utilisation")
    # CPU-time counters in seconds since the first row (as procfs.py writes them), 32-bit wrap undone
    ticks = {k: _ints(raw[k]) for k in ("cpu.busy_ticks", "cpu.steal_ticks", "cpu.total_ticks") if present(k)}
    if len(ticks) == 3:  # the sh sampler's busy includes steal; busy_s, as procfs.py's, does not
        pairs = zip(ticks["cpu.busy_ticks"], ticks["cpu.steal_ticks"])
        busy = [None if b is None or st is None else b - st for b, st in pairs]
        columns["cpu.busy_s"] = _since_first(busy, wrap)
        columns["cpu.steal_s"] = _since_first(ticks["cpu.steal_ticks"], wrap)
        columns["cpu.total_s"] = _since_first(ticks["cpu.total_ticks"], wrap)
    for raw_name, channel in (("proc.cpu_ticks", "proc.cpu_s"), ("sampler.cpu_ticks", "sampler.cpu_s")):
        if present(raw_name):
            columns[channel] = _since_first(_ints(raw[raw_name]), wrap)
    if "cpu.busy_s" in columns and "proc.cpu_s" not in columns:
        missing.append("proc/CPU_PID/stat: the measured work's CPU time is not known, so other processes' is not")
    if present("mem.total_kb") and present("mem.available_kb"):
        total, avail = _ints(raw["mem.total_kb"]), _ints(raw["mem.available_kb"])
        columns["mem.used_mb"] = [None if t is None or a is None else (t - a) / 1024 for t, a in zip(total, avail)]
        columns["mem.available_mb"] = [None if t is None or a is None else a / 1024 for t, a in zip(total, avail)]
        found.append("proc/meminfo")
    else:
        missing.append("proc/meminfo: not readable (or no MemAvailable), no memory figures")
    if "proc.rss_kb" in raw:
        columns["proc.rss_mb"] = [None if v is None else v / 1024 for v in _ints(raw["proc.rss_kb"])]

    # cpufreq: policyN -> cpuN, kHz -> MHz; a policy whose current frequency never read is dropped
    for number in _numbered(header, r"policy(\d+)\.cur_khz"):
        cur, top = raw[f"policy{number}.cur_khz"], raw.get(f"policy{number}.max_khz", [""] * n)
        if not any(v != "" for v in cur):
            missing.append(f"policy{number}/scaling_cur_freq: not readable")
            continue
        columns[f"cpu{number}.freq_mhz"] = [None if v is None else v / 1000 for v in _ints(cur)]
        columns[f"cpu{number}.max_freq_mhz"] = [None if v is None else v / 1000 for v in _ints(top)]
        found.append(f"policy{number}")

    # thermal: zone type as the channel name; a zone with no plausible reading is dropped, and
    # implausible readings (-256 C offline, -273 C, 1000 C) are empty cells, as thermal.py does
    zone_types = meta.get("zones") or {}
    named: list[str] = []
    for number in _numbered(header, r"zone(\d+)\.temp_mc"):
        kind = zone_types.get(f"zone{number}") or f"thermal_zone{number}"
        celsius = [None if v is None else v / 1000 for v in _ints(raw[f"zone{number}.temp_mc"])]
        if not any(plausible(c) for c in celsius):
            seen = next((c for c in celsius if c is not None), None)
            missing.append(f"thermal_zone{number} ({kind}): reads {seen} C, offline or absurd: dropped")
            continue
        channel = f"temp.{channel_name(kind)}_c"
        if channel in named:
            channel = f"temp.{channel_name(kind)}_{number}_c"
        named.append(channel)
        columns[channel] = [c if plausible(c) else None for c in celsius]
        found.append(f"thermal_zone{number} ({kind})")

    # battery: the supply chosen, its units and sign rule decided once over the whole window, then
    # every row read with that plan
    battery, power_total, battery_notes, battery_columns = _battery(header, rows, meta, battery_pins, missing)
    notes += battery_notes
    columns.update(battery_columns)
    if battery:
        found.append(battery)

    channels = list(columns)
    with open(out_csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "sampler.lag_ms", "sampler.missed", *channels])
        for i, row in enumerate(rows):
            writer.writerow([_seconds(row[0]), "", "", *(_cell(columns[c][i]) for c in channels)])

    probe = {
        "probe": "sh_sampler",
        "channels": channels,
        "found": found,
        "missing": missing,
        "power_total": power_total,
        "power_method": "battery" if power_total else None,
        "notes": notes,
        "clock": meta.get("clock"),
        "shell": meta.get("shell"),
        "int_bits": meta.get("int_bits"),
        "zones": zone_types,
        "battery": battery,
        "batteries": meta.get("batteries") or ({"battery": meta["battery"]} if meta.get("battery") else {}),
        "rows": n,
    }
    return {
        "root": meta.get("root"),
        "sampler": "sh",
        "clock": meta.get("clock"),
        "interval_ms": meta.get("interval_ms"),
        "power_method": "battery" if power_total else "none",
        "power_total": power_total,
        # the sh sampler reads no rails: the battery's own total is the only candidate (power_rails rule 5)
        "power_rule": "device total: the battery's output while it discharges"
        if power_total
        else "none: no battery supply gives power here",
        "channels": channels,
        "probes": {"sh_sampler": probe},
    }


def _battery(header, rows, meta, pins, missing) -> tuple[str | None, str | None, list[str], dict[str, list]]:
    """(supply path, power_total channel, notes, columns) of the battery part of the raw trace."""
    supplies: dict[str, dict[str, int]] = {}
    for i, name in enumerate(header):
        if m := RAW_BATTERY.fullmatch(name):
            supplies.setdefault(m.group(1), {})[RAW_KEYS[m.group(2)]] = i
    if not supplies:
        missing.append("sys/class/power_supply: no supply of type Battery")
        return None, None, [], {}
    listed = meta.get("batteries") or {}
    paths = {
        k: listed.get(f"battery{k}") or (meta.get("battery") if k == "" else None) or f"battery{k}" for k in supplies
    }
    readings = {
        k: [{key: row[i] for key, i in cols.items() if row[i] != ""} for row in rows] for k, cols in supplies.items()
    }
    pins = pins or {}
    names = {k: paths[k].rstrip("/").rsplit("/", 1)[-1] for k in supplies}
    by_name = {names[k]: readings[k] for k in supplies}  # the sampler lists supplies in name order
    name, notes, why = android_battery.pick_supply(by_name, pins.get("supply"))
    if name is None:
        missing.append(f"sys/class/power_supply: {why}")
        return None, None, notes, {}
    chosen = next(k for k in supplies if names[k] == name)

    window = readings[chosen]
    plan = android_battery.decide(window, **{key: pins.get(key) for key in PIN_KEYS})
    notes += plan.notes
    out: dict[str, list] = {
        c: []
        for c in ("battery.current_a", "battery.voltage_v", "battery.power_w", "battery.temp_c", "battery.charging")
    }
    directions: Counter = Counter()
    row_notes: Counter = Counter()
    for raw in window:
        reading = plan.read(raw)
        directions[reading.direction] += 1
        row_notes.update(reading.notes)
        out["battery.current_a"].append(reading.current_a)
        out["battery.voltage_v"].append(reading.voltage_v)
        out["battery.power_w"].append(reading.power_w)
        out["battery.temp_c"].append(reading.temp_c)
        out["battery.charging"].append(float(reading.charging))
    counted = ", ".join(f"{n} {d}" for d, n in directions.most_common()) or "none"
    notes.append(f"rows: {counted} (battery power counts only while discharging)")
    notes += [f"{n} row(s): {note}" for note, n in row_notes.most_common(ROW_NOTES)]
    if len(row_notes) > ROW_NOTES:
        notes.append(f"... and {len(row_notes) - ROW_NOTES} other row note(s)")
    # a channel the plan cannot give (no current_now, say) is left out, not written empty
    keep = {"battery.charging", *(["battery.power_w"] if plan.gives_power else [])}
    columns = {c: v for c, v in out.items() if c in keep or any(x is not None for x in v)}
    power_total = None
    if plan.gives_power:
        columns["power.total_w"] = out["battery.power_w"]
        power_total = "power.total_w"
    return paths[chosen], power_total, notes, columns


def _read_raw(path) -> tuple[list[str], list[list[str]]]:
    """Header and the whole rows with an integer t_ns (a torn last line from a kill is skipped)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None) or ["t_ns"]
        rows = [row for row in reader if len(row) == len(header) and row[0].isdigit()]
    return header, rows


def _numbered(header: list[str], pattern: str) -> list[int]:
    numbers = [int(m.group(1)) for name in header if (m := re.fullmatch(pattern, name))]
    return sorted(numbers)


def _int(cell: str) -> int | None:
    try:
        return int(cell)
    except ValueError:
        return None


def _ints(cells: list[str]) -> list[int | None]:
    return [_int(c) for c in cells]


def _util(busy_cells: list[str], total_cells: list[str], wrap: int | None) -> list[float | None]:
    """100 x delta busy / delta total against the last row that had both; the first row is empty."""
    out: list[float | None] = []
    last = None
    for busy, total in zip(_ints(busy_cells), _ints(total_cells)):
        if busy is None or total is None:
            out.append(None)
            continue
        value = None
        if last is not None:
            d_busy, d_total = busy - last[0], total - last[1]
            if wrap:
                d_busy, d_total = d_busy % wrap, d_total % wrap
            if d_total > 0 and 0 <= d_busy <= d_total:
                value = 100.0 * d_busy / d_total
        out.append(value)
        last = (busy, total)
    return out


USER_HZ = 100  # the unit of /proc/stat and /proc/PID/stat times: USER_HZ, 100 on every Linux ABI Android runs


def _since_first(ticks: list[int | None], wrap: int | None) -> list[float | None]:
    """Cumulative tick counts -> seconds since the first row that read, each step taken modulo `wrap`
    (mksh's 32-bit arithmetic) so a wrapped counter keeps counting."""
    out: list[float | None] = []
    first = last = None
    acc = 0
    for v in ticks:
        if v is None:
            out.append(None)
            continue
        if first is None:
            first = last = v
        step = v - last
        if wrap:
            step %= wrap
        acc += step
        last = v
        out.append(acc / USER_HZ)
    return out


def _seconds(t_ns: str) -> str:
    """ns digits -> seconds with 6 decimals, exactly (no float rounding of a large clock)."""
    us = (int(t_ns) + 500) // 1000
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _cell(value) -> str:
    """As the Python sampler writes a cell: empty for None, 6 significant digits for a float."""
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
