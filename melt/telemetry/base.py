"""What every probe offers: detect (which channels exist here, and what was looked for and not
found) and sample (current values, SI-derived units, unit in the channel name).

All files are read under a root so that a recorded sysfs/procfs tree can stand in for a board.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class Detection:
    probe: str
    channels: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # what was found (paths, commands)
    missing: list[str] = field(default_factory=list)  # what was looked for and not found, and why
    # a probe that measures a whole device (battery, PMIC sum, NVML, RAPL) offers its own total as
    # power_total ("power.total_w") with its power_method; power_rails.choose() decides among offers
    power_total: str | None = None
    power_method: str | None = None  # pmic | battery | nvml | rapl
    notes: list[str] = field(default_factory=list)
    # power rails this probe reads: {"channel", "label", "labelled", "chip", "method", "probe"}
    rails: list[dict] = field(default_factory=list)
    # tokens of the tool's output that were not understood, each skipped alone: token -> {count, form}
    skipped: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Probe(ABC):
    """Base: subclasses set `name` and implement detect() and sample()."""

    name = "probe"

    def __init__(self, root: str = "/", sensors: dict | None = None, pid: int | None = None):
        self.root = root
        self.sensors = sensors or {}
        self.pid = pid

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *(p.lstrip("/") for p in parts))

    @abstractmethod
    def detect(self) -> Detection:
        """Which channels this device has for this probe, and what was not found and why."""

    @abstractmethod
    def sample(self) -> dict[str, float]:
        """Current values of the detected channels (a value that cannot be read is left out)."""

    def close(self) -> None:  # noqa: B027 - most probes hold nothing to release
        """Release what detect() started (a tool process, a library handle)."""

    def child_pids(self) -> list[int]:
        """Processes this probe started and keeps running (a board tool): their CPU time is the
        sampler's, not another process's."""
        return []

    def summary(self) -> dict:
        """What the probe saw over the whole run that detect() could not know (lines it could not
        read, tokens it skipped); merged into sensors.json when sampling ends."""
        return {}


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def read_number(path: str) -> float | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def channel_name(text: str) -> str:
    """A sensor's own name as a channel name part: lower case, [a-z0-9_] only."""
    out = "".join(c if c.isalnum() else "_" for c in text.strip().lower())
    return "_".join(filter(None, out.split("_"))) or "unnamed"
