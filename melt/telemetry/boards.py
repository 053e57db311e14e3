"""Probes for board tools: tegrastats (Jetson), vcgencmd (Raspberry Pi). The parsing lives in
tegrastats.py and vcgencmd.py; the battery probe is in battery.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

from melt.telemetry import tegrastats, vcgencmd
from melt.telemetry.base import Detection, Probe, channel_name

TEGRASTATS_FIRST_LINE_S = 5.0
VCGENCMD_TIMEOUT_S = 2.0


def _tool(probe: Probe, key: str, default: str) -> str | None:
    """A board tool: the profile's path (under the sensor root first, so a recorded tree's stand-in
    wins over anything on this machine), else the default name under the root, else on PATH."""
    pinned = probe.sensors.get(key)
    candidates = [probe.path(pinned), pinned] if pinned else [probe.path("/usr/bin", default)]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    return None if pinned or probe.root not in ("/", "") else shutil.which(default)


class TegrastatsProbe(Probe):
    """Runs `tegrastats --interval N` for the whole case; sample() returns the newest line's values."""

    name = "tegrastats"

    def detect(self) -> Detection:
        d = Detection(self.name)
        binary = _tool(self, "tegrastats", "tegrastats")
        if not binary or not os.path.exists(binary):
            d.missing.append(f"tegrastats: {self.sensors.get('tegrastats') or 'not on PATH'} (not a Jetson?)")
            return d
        interval = int(self.sensors.get("interval_ms", 100))
        self.proc = subprocess.Popen(
            tegrastats.tegrastats_command(binary, interval),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.latest: dict[str, float] = {}
        self.lines, self.malformed, self.malformed_example = 0, 0, None
        self.skipped: dict[str, dict] = {}
        self.dropped: dict[str, dict] = {}
        self.first = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.first.wait(TEGRASTATS_FIRST_LINE_S):
            self.close()
            d.missing.append(f"{binary}: no parsable line within {TEGRASTATS_FIRST_LINE_S} s")
            return d
        d.found.append(binary)
        d.channels = list(self.latest)
        d.rails = [
            {"channel": f"power.{channel_name(rail)}_w", "label": rail, "labelled": True, "chip": None,
             "method": "tegrastats", "probe": self.name}
            for rail in self.first_rails
        ]  # fmt: skip
        d.notes.append(f"line form: {self.first_form}")
        d.skipped = {token: dict(seen) for token, seen in self.skipped.items()}
        return d

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                sample = tegrastats.parse_line(line)
            except tegrastats.TegraParseError as e:
                self.malformed += 1  # counted and one example kept, never guessed
                self.malformed_example = self.malformed_example or str(e)
                continue
            values = dict(sample.values)
            values.update({f"power.{channel_name(rail)}_w": watts for rail, watts in sample.rails.items()})
            for token in sample.skipped:  # each token not understood, with the form of the line it was in
                self.skipped.setdefault(token, {"count": 0, "form": sample.form})["count"] += 1
            for token in sample.dropped:
                self.dropped.setdefault(token, {"count": 0, "why": sample.dropped_why.get(token)})["count"] += 1
            self.lines += 1
            self.latest = values
            if not self.first.is_set():
                self.first_rails, self.first_form = list(sample.rails), sample.form
                self.first.set()

    def summary(self) -> dict:
        return {
            "lines": self.lines,
            "malformed_lines": self.malformed,
            "malformed_example": self.malformed_example,
            "skipped": self.skipped,  # token -> {"count", "form"}: not understood, each skipped alone
            "dropped": self.dropped,  # token -> {"count", "why"}: understood, not a reading (offline zone, placeholder)
        }

    def sample(self) -> dict[str, float]:
        return dict(self.latest)

    def child_pids(self) -> list[int]:
        proc = getattr(self, "proc", None)
        return [proc.pid] if proc and proc.poll() is None else []

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()


class VcgencmdProbe(Probe):
    """Raspberry Pi firmware: SoC temperature, throttle bits, and on a Pi 5 the PMIC's rails."""

    name = "vcgencmd"

    def _run(self, *args: str) -> str | None:
        try:
            out = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=VCGENCMD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    def detect(self) -> Detection:
        d = Detection(self.name)
        self.binary = _tool(self, "vcgencmd", "vcgencmd")
        if not self.binary or not os.path.exists(self.binary):
            d.missing.append(f"vcgencmd: {self.sensors.get('vcgencmd') or 'not on PATH'} (not a Raspberry Pi?)")
            return d
        d.found.append(self.binary)
        self.reads = []
        first = self.sample_parts(detecting=True)
        d.channels = list(first)
        self.has_pmic = "power.total_w" in first
        d.rails = [
            {"channel": c, "label": c[len("power.") : -len("_w")].upper(), "labelled": True, "chip": None,
             "method": "pmic", "probe": self.name}
            for c in first if c.startswith("power.") and c != "power.total_w"
        ]  # fmt: skip
        if self.has_pmic:
            d.power_total, d.power_method = "power.total_w", "pmic"
            d.notes.append("power.total_w = sum of V x I over PMIC rails with both (rail power, not wall power)")
        else:
            d.missing.append("vcgencmd pmic_read_adc: no rail power (only a Pi 5 has it)")
        return d

    def sample_parts(self, detecting: bool = False) -> dict[str, float]:
        values: dict[str, float] = {}
        for args, parse in (
            (("measure_temp",), self._temp),
            (("get_throttled",), self._throttled),
            (("pmic_read_adc",), self._pmic),
        ):
            if not detecting and args not in self.reads:
                continue
            text = self._run(*args)
            try:
                got = parse(text) if text else {}
            except (vcgencmd.VcgencmdParseError, ValueError):
                got = {}
            if got and detecting:
                self.reads.append(args)
            values.update(got)
        return values

    @staticmethod
    def _temp(text: str) -> dict[str, float]:
        return {"temp.soc_c": vcgencmd.parse_measure_temp(text)}

    @staticmethod
    def _throttled(text: str) -> dict[str, float]:
        bits = vcgencmd.parse_get_throttled(text)
        return {
            "throttle.pi_now": float(bits["throttling_now"]),
            "throttle.pi_under_voltage_now": float(bits["under_voltage_now"]),
        }

    @staticmethod
    def _pmic(text: str) -> dict[str, float]:
        adc = vcgencmd.parse_pmic_read_adc(text)
        values = {f"power.{channel_name(rail)}_w": w for rail, w in adc["power_w"].items()}
        if adc["total_w"] is not None:
            values["power.total_w"] = adc["total_w"]
        return values

    def sample(self) -> dict[str, float]:
        return self.sample_parts()
