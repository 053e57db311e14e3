"""The sampler: runs on the device in its own process for the whole case, reading every probe
at a fixed interval on the monotonic clock (the clock the agent stamps events with).

Output: trace.csv (`t_s`, `sampler.lag_ms`, `sampler.missed`, then one column per channel; an
empty cell is a value that could not be read) and sensors.json (what each probe found, what it
looked for and did not find, which channel is total power and how it was chosen). A tick that
could not be taken on time is counted in `sampler.missed` of the next row; rows are never
resampled or invented.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time

from melt.telemetry import power_rails
from melt.telemetry.base import read_text
from melt.telemetry.procfs import USER_HZ, process_cpu_ticks
from melt.telemetry.registry import make_probes

FLUSH_EVERY_S = 1.0


TOTALS = ("power.total_w", "energy.total_j")  # derived by the sampler from the one power decision


def _detect(root: str, sensors: dict, pid: int | None) -> tuple[list, list[str], dict, power_rails.Choice]:
    """Probes that own at least one channel, each with the channels it owns (the first wins), and
    the decision of which channel is total power (taken here, once, after every probe detected)."""
    probes, channels, report = [], [], {"root": root, "probes": {}}
    rails, offers = [], []
    for probe in make_probes(root, sensors, pid):
        try:
            det = probe.detect()
        except Exception as e:  # a probe that breaks must not take the trace with it
            report["probes"][probe.name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        report["probes"][probe.name] = det.to_json()
        new = [c for c in det.channels if c not in channels and c not in TOTALS]
        rails += [r for r in det.rails if r["channel"] in new]  # a rail another probe owns is that probe's
        if det.power_total:
            note = next((n for n in det.notes if "total" in n), f"the {det.power_method} probe's own total")
            offers.append({"probe": probe.name, "method": det.power_method, "note": note})
        if new or det.power_total:
            probes.append((probe, set(new)))
            channels += new
        else:
            probe.close()
    choice = power_rails.choose(rails, offers, sensors.get("power_total"), root)
    report.update(choice.to_json())
    if choice.kind:
        channels.append("power.total_w")
        if choice.kind == "probe" and "energy.total_j" in report["probes"][choice.probe].get("channels", []):
            channels.append("energy.total_j")  # the energy counter of the probe whose power is the total
    for probe, owned in list(probes):
        if not owned and probe.name != choice.probe:
            probe.close()
            probes.remove((probe, owned))
    report["channels"] = channels
    return probes, channels, report, choice


def detect_all(root: str = "/", sensors: dict | None = None) -> dict:
    """What `melt devices probe` shows: every probe's detection, without sampling."""
    probes, _, report, _ = _detect(root, sensors or {}, None)
    for probe, _owned in probes:
        probe.close()
    return report


def run(out_dir: str, interval_ms: int, root: str = "/", sensors: dict | None = None, pid: int | None = None) -> int:
    """Sample until SIGTERM/SIGINT; returns the number of rows written."""
    stop = False

    def _stop(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    probes, channels, report, choice = _detect(root, {**(sensors or {}), "interval_ms": interval_ms}, pid)
    report["interval_ms"] = interval_ms
    own_zero = _own_cpu_ticks(root, probes)
    if own_zero is not None:
        channels.append("sampler.cpu_s")
    _write_json(os.path.join(out_dir, "sensors.json"), report)
    interval = interval_ms / 1000
    rows, missed, last_flush = 0, 0, time.monotonic()
    with open(os.path.join(out_dir, "trace.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_s", "sampler.lag_ms", "sampler.missed", *channels])
        f.flush()
        start = time.monotonic()
        tick = 0

        def take() -> dict[str, float]:
            values: dict[str, float] = {}
            totals: dict[str, float | None] = {}
            for probe, owned in probes:
                try:
                    got = probe.sample()
                except Exception:  # one bad read leaves empty cells, not a dead sampler
                    continue
                values.update((k, v) for k, v in got.items() if k in owned)
                if probe.name == choice.probe:
                    totals[probe.name] = got.get("power.total_w")
                    if "energy.total_j" in got:
                        values["energy.total_j"] = got["energy.total_j"]
            total = choice.total_w(values, totals)
            if total is not None:
                values["power.total_w"] = total
            own = _own_cpu_ticks(root, probes) if own_zero is not None else None
            if own is not None:
                values["sampler.cpu_s"] = (own - own_zero) / USER_HZ
            return values

        while not stop:
            due = start + tick * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # interrupted early by SIGTERM, then the loop ends
                if stop:
                    break
            t = time.monotonic()
            values = take()
            writer.writerow([f"{t:.6f}", f"{(t - due) * 1000:.3f}", missed, *(_cell(values.get(c)) for c in channels)])
            rows += 1
            # the next tick on the grid that is still ahead; skipped ticks are counted, not filled
            tick += 1
            late_s = time.monotonic() - (start + tick * interval)
            missed = int(late_s // interval) if late_s > 0 else 0  # whole intervals gone by
            tick += missed
            if time.monotonic() - last_flush >= FLUSH_EVERY_S:
                f.flush()
                last_flush = time.monotonic()
        # a closing sample when told to stop, off the grid (no lag): counters and power at the very end
        # of the case, so the last trial's window has a sample after it
        t = time.monotonic()
        values = take()
        writer.writerow([f"{t:.6f}", "", 0, *(_cell(values.get(c)) for c in channels)])
        rows += 1
    for probe, _owned in probes:
        probe.close()
        summary = probe.summary()
        if summary and probe.name in report["probes"]:
            report["probes"][probe.name]["run"] = summary
    _write_json(os.path.join(out_dir, "sensors.json"), report)  # again, with what the probes saw while sampling
    return rows


def _own_cpu_ticks(root: str, probes: list) -> int | None:
    """CPU ticks of the sampler itself (its threads, reaped children) and of the tools its probes run
    (tegrastats): melt's own observer cost, not another process's. Read under the sensor root, like
    /proc/stat, so the two are of one machine; None where that root has no such process."""
    own = process_cpu_ticks(read_text(os.path.join(root, f"proc/{os.getpid()}/stat")) or "")
    if own is None:
        return None
    for probe, _owned in probes:
        for child in probe.child_pids():
            own += process_cpu_ticks(read_text(os.path.join(root, f"proc/{child}/stat")) or "") or 0
    return own


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
