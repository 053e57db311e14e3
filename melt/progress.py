"""What a run shows while it goes: a live table per device on a terminal (rich), plain lines
otherwise (CI logs). Both are the `progress` callback of run.Execution, called from device workers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

from melt import registry

FIGURES = tuple((m.name, m.live) for m in registry.METRICS if m.live)  # the live view's figures (melt.registry)


def figures_line(metrics: dict | None) -> str:
    s = (metrics or {}).get("summary", {})
    figures = [fmt.format(s[key]) for key, fmt in FIGURES if s.get(key) is not None]
    cv = f", cv {s['cv_pct']:.1f}%" if s.get("cv_pct") is not None else ""
    return f"{', '.join(figures)} ({s.get('n_trials')} trials{cv}, {s.get('validity')})"


@dataclass
class DeviceState:
    total: int
    done: int = 0
    ok: int = 0
    failed: int = 0
    current: str = ""
    started: float = field(default_factory=time.monotonic)
    last: str = ""


class SweepProgress:
    """Call as progress(event, **info). Use as a context manager around the run."""

    def __init__(self, console: Console | None = None, live: bool | None = None):
        self.console = console or Console()
        self.live_view = self.console.is_terminal if live is None else live
        self.devices: dict[str, DeviceState] = {}
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.run_id = ""

    def __enter__(self) -> SweepProgress:
        if self.live_view:
            self.live = Live(self.table(), console=self.console, refresh_per_second=4, get_renderable=self.table)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.stop()

    def table(self) -> Table:
        t = Table(title=f"melt sweep {self.run_id}", expand=False)
        for name in ("device", "progress", "ok", "failed", "now", "elapsed"):
            t.add_column(name)
        with self.lock:
            for device, s in self.devices.items():
                now = s.current or ("done" if s.done == s.total else "waiting")
                elapsed = f"{time.monotonic() - s.started:.0f} s"
                t.add_row(device, f"{s.done}/{s.total}", str(s.ok), str(s.failed) if s.failed else "", now, elapsed)
        return t

    def _print(self, line: str) -> None:
        if self.live:
            self.live.console.print(line, markup=False, highlight=False)
        else:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __call__(self, event: str, **info) -> None:
        if event == "run_start":
            with self.lock:
                self.run_id = info["run_id"]
                self.devices = {d: DeviceState(len(cases)) for d, cases in info["devices"].items() if cases}
            for device, s in self.devices.items():
                self._print(f"{device}: {s.total} cases")
            return
        if event == "lab_wait":  # a lab place held by someone else (melt/lab/): shown until the case starts
            with self.lock:
                state = self.devices.get(info["device"])
                if state is not None:
                    state.current = f"waiting for place {info['place']}, {info['holder']}"
            self._print(f"{info['device']}: waiting for place {info['place']}, {info['holder']}")
            return
        case = info.get("case")
        if case is None:
            return
        state = self.devices.get(case.device)
        if state is None:
            return
        tag = f"{case.device} [{info['index']}/{info['total']}] {case.label}"
        if event == "case_start":
            with self.lock:
                state.current = case.label
            if not self.live:
                self._print(f"{tag} ...")
        elif event == "case_end":
            with self.lock:
                state.done += 1
                state.current = ""
                if info["status"] == "ok":
                    state.ok += 1
                else:
                    state.failed += 1
            if info["status"] == "ok":
                self._print(f"{tag}: ok: {figures_line(info.get('metrics'))}")
            else:
                self._print(f"{tag}: FAILED: {info['reason']}")
