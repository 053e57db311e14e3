"""Reading a case's trace.csv (and sensors.json) back: columns of floats, None for empty cells."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Trace:
    t_s: list[float] = field(default_factory=list)
    columns: dict[str, list[float | None]] = field(default_factory=dict)
    sensors: dict = field(default_factory=dict)

    @property
    def power_method(self) -> str:
        return self.sensors.get("power_method") or "none"

    def channels(self, prefix: str) -> list[str]:
        return [c for c in self.columns if c.startswith(prefix)]

    def window(self, name: str, t0: float, t1: float) -> list[tuple[float, float]]:
        """(t, value) samples of one channel with t0 <= t <= t1 and a value."""
        col = self.columns.get(name, [])
        return [(t, v) for t, v in zip(self.t_s, col) if v is not None and t0 <= t <= t1]

    def series(self, name: str) -> list[tuple[float, float]]:
        return [(t, v) for t, v in zip(self.t_s, self.columns.get(name, [])) if v is not None]


def _float(cell: str) -> float | None:
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def read_trace(case_dir: Path) -> Trace | None:
    case_dir = Path(case_dir)
    path = case_dir / "trace.csv"
    opener = open
    if not path.is_file():
        path = case_dir / "trace.csv.gz"
        opener = gzip.open
        if not path.is_file():
            return None
    trace = Trace()
    with opener(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return trace
        names = header[1:]
        trace.columns = {n: [] for n in names}
        for row in reader:
            if len(row) != len(header):
                continue  # a torn last line from a killed sampler
            t = _float(row[0])
            if t is None:
                continue
            trace.t_s.append(t)
            for name, cell in zip(names, row[1:]):
                trace.columns[name].append(_float(cell))
    sensors = case_dir / "sensors.json"
    if sensors.is_file():
        trace.sensors = json.loads(sensors.read_text())
    return trace
