"""A case's trace for display: the channels worth plotting, grouped by unit, thinned, with the phase
windows (idle baseline, load, prefill, decode, cool-down) and the throttled spans on the same clock.

Times are seconds from the trace's first sample. Throttling is judged by the rule the metrics use
(telemetry_metrics: a throttle flag set, or a busy core held under 90% of its maximum frequency),
so the marks agree with the table's `throttled` column.
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd

from melt.analysis.throttle import BUSY_UTIL_PCT, CAPPED_RATIO
from melt.report.downsample import minmax_envelope, rounded

# subplot -> which channels go there; order is top to bottom
GROUPS = [
    ("power", "Power (W)", re.compile(r"^(power\.[\w.-]+_w|battery\.power_w|gpu\d*\.power_w)$")),
    ("temp", "Temperature (°C)", re.compile(r"^temp\.[\w.-]+_c$")),
    ("freq", "Frequency (MHz)", re.compile(r"^(?!.*max_freq)[\w.-]+\.freq_mhz$")),
    ("util", "Utilisation (%)", re.compile(r"^(cpu|gpu\d*|emc)\.util_pct$")),
    ("mem", "Process memory (MB)", re.compile(r"^proc\.rss_mb$")),
]
PHASE_COLORS = {
    "gate": "rgba(148,163,184,0.28)",
    "idle": "rgba(56,189,248,0.20)",
    "load": "rgba(167,139,250,0.28)",
    "prefill": "rgba(251,146,60,0.30)",
    "decode": "rgba(34,197,94,0.24)",
    "trials": "rgba(34,197,94,0.18)",
    "cooldown": "rgba(148,163,184,0.22)",
    "reference_before": "rgba(250,204,21,0.30)",
    "reference_after": "rgba(250,204,21,0.30)",
}
PHASE_NAMES = {
    "gate": "thermal gate",
    "idle": "idle baseline",
    "load": "load",
    "prefill": "prefill",
    "decode": "decode",
    "trials": "trials",
    "cooldown": "cool-down",
    "reference_before": "machine speed loop",
    "reference_after": "machine speed loop",
}
MAX_TRIAL_WINDOWS = 60  # above this, prefill/decode of each trial are too thin to see: shade all trials as one
MAX_THROTTLE_SPANS = 200


def trace_path(case_dir: Path) -> Path | None:
    for name in ("trace.csv", "trace.csv.gz"):
        if (case_dir / name).is_file():
            return case_dir / name
    return None


def shown_channels(names: list[str]) -> dict[str, list[str]]:
    """group key -> channel names that go into it."""
    out: dict[str, list[str]] = {}
    for name in names:
        for key, _, pattern in GROUPS:
            if pattern.match(name):
                out.setdefault(key, []).append(name)
                break
    return out


def header(case_dir: Path) -> list[str]:
    """trace.csv's column names (cheap: one line) to size the display budget before reading."""
    path = trace_path(case_dir)
    if path is None:
        return []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return next(csv.reader(f), [])


def _needed(name: str) -> bool:
    """Columns to read: shown channels and what the throttling rule looks at."""
    return (
        name == "t_s"
        or name.startswith("throttle.")
        or name.endswith("freq_mhz")
        or name == "cpu.util_pct"
        or any(pattern.match(name) for _, _, pattern in GROUPS)
    )


def _read(path: Path, names: list[str]) -> pd.DataFrame:
    wanted = [n for n in names if _needed(n)]
    frame = pd.read_csv(path, usecols=wanted, on_bad_lines="skip")  # skip: a killed sampler's torn last line
    for name in frame.columns:
        if frame[name].dtype == object:  # a stray text cell: that sample is empty, not the column
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame.dropna(subset=["t_s"]).sort_values("t_s")


def throttled_mask(frame: pd.DataFrame) -> np.ndarray:
    mask = np.zeros(len(frame), dtype=bool)
    for name in frame.columns:
        if name.startswith("throttle."):
            mask |= frame[name].fillna(0).to_numpy() != 0
    util = frame["cpu.util_pct"].to_numpy() if "cpu.util_pct" in frame else None
    if util is not None:
        busy = np.nan_to_num(util) >= BUSY_UTIL_PCT
        for name in frame.columns:
            top_name = name.replace(".freq_mhz", ".max_freq_mhz")
            if name.endswith(".freq_mhz") and "max_freq" not in name and top_name in frame:
                f, top = frame[name].to_numpy(), frame[top_name].to_numpy()
                with np.errstate(invalid="ignore"):
                    mask |= busy & (f < CAPPED_RATIO * top)
    return mask


def spans(t: np.ndarray, mask: np.ndarray, limit: int = MAX_THROTTLE_SPANS) -> list[list[float]]:
    """Contiguous runs of True as [t_start, t_end]; merged where there would be more than limit."""
    if not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    runs = [[float(t[a]), float(t[min(b, len(t) - 1)])] for a, b in zip(edges[0::2], edges[1::2])]
    while len(runs) > limit:  # merge across the smallest gaps first
        gap = min(b[0] - a[1] for a, b in zip(runs, runs[1:]))
        merged = [runs[0]]
        for r in runs[1:]:
            if r[0] - merged[-1][1] <= gap:
                merged[-1][1] = r[1]
            else:
                merged.append(r)
        runs = merged
    return runs


def phases(agent: dict, trials: list[dict], runtime: str) -> list[dict]:
    """[{"phase", "t0_ns", "t1_ns"}] in time order, on the device's monotonic clock."""
    marks = agent.get("phases", {}) or {}
    out = [{"phase": k, "t0_ns": v[0], "t1_ns": v[1]} for k, v in marks.items() if k != "trials"]
    per_trial = []
    if runtime == "llama_cpp":
        for t in trials:
            tok = t.get("token_ns") or []
            if t.get("t_tokenized_ns") and t.get("t_prefill_end_ns"):
                per_trial.append({"phase": "prefill", "t0_ns": t["t_tokenized_ns"], "t1_ns": t["t_prefill_end_ns"]})
            if len(tok) > 1:
                per_trial.append({"phase": "decode", "t0_ns": tok[0], "t1_ns": tok[-1]})
    has_own = any(p["phase"] in ("prefill", "decode") for p in out)  # llama-bench marks its own runs
    if per_trial and len(per_trial) <= 2 * MAX_TRIAL_WINDOWS and not has_own:
        out += per_trial
    elif "trials" in marks and not has_own:
        out.append({"phase": "trials", "t0_ns": marks["trials"][0], "t1_ns": marks["trials"][1]})
    return sorted(out, key=lambda p: p["t0_ns"])


def case_trace(case_dir: Path, agent: dict, trials: list[dict], runtime: str, max_points: int) -> dict | None:
    """Display data of one case's trace, or None when there is no trace file."""
    path = trace_path(case_dir)
    names = header(case_dir)
    if path is None or "t_s" not in names:
        return None
    frame = _read(path, names)
    if frame.empty:
        return {"empty": "the trace has no samples"}
    t_abs = frame["t_s"].to_numpy(dtype=float)
    origin = float(t_abs[0])
    groups = []
    chosen = shown_channels(list(frame.columns))
    columns: dict[str, np.ndarray] = {}
    for key, title, _ in GROUPS:
        names = []
        totals_first = sorted(chosen.get(key, []), key=lambda n: n not in ("power.total_w", "cpu.util_pct"))
        for name in totals_first:
            y = frame[name].to_numpy(dtype=float)
            if np.isnan(y).all():
                continue
            twin = next((n for n in names if np.array_equal(columns[n[0]], y, equal_nan=True)), None)
            if twin:  # e.g. every core of one cpufreq policy: one line, all names
                twin.append(name)
                continue
            columns[name] = y
            names.append([name])
        if names:
            groups.append({"key": key, "title": title, "channels": names})
    x, thin = minmax_envelope(t_abs - origin, columns, max_points)
    for g in groups:
        g["series"] = [{"names": names, "y": rounded(thin[names[0]])} for names in g.pop("channels")]
    step = float(np.median(np.diff(t_abs))) if len(t_abs) > 1 else 1.0
    windows = [
        {**p, "t0_s": p["t0_ns"] / 1e9 - origin, "t1_s": p["t1_ns"] / 1e9 - origin}
        for p in phases(agent, trials, runtime)
    ]
    return {
        "x": rounded(x, significant=max(4, len(str(int(t_abs[-1] - origin))) + 2)),
        "groups": groups,
        "phases": [{"phase": w["phase"], "t0_s": round(w["t0_s"], 4), "t1_s": round(w["t1_s"], 4)} for w in windows],
        "throttled": spans(t_abs - origin, throttled_mask(frame)),
        "samples": len(t_abs),
        "interval_s": step,
        "shown_points": len(x),
    }
