"""runtime onnxruntime: one inference per trial, timed by melt's agent (melt.runtimes.onnxruntime)."""

from __future__ import annotations

from melt.analysis.stats import cv_pct, percentile, spread
from melt.analysis.strategies.base import RuntimeAnalysis, ns_to_s


class OnnxAnalysis(RuntimeAnalysis):
    runtime = "onnxruntime"
    cv_metric = "latency_ms"
    sustained_figures = ("burst_latency_p50_ms", "sustained_latency_p50_ms")
    sustained_lower_is_better = True

    def trial_value(self, t: dict) -> float | None:
        return t["duration_s"] * 1e3 if t.get("duration_s") is not None else None

    def summarise(self, values: list[float]) -> float:
        """p50 as latency_p50_ms is taken (analysis.stats.percentile)."""
        return percentile(values, 50)

    def figures(self, counted: list[dict]) -> tuple[dict, dict, float | None]:
        if not counted:
            return {}, {}, None
        latencies = [t["duration_s"] * 1e3 for t in counted]
        figures = {f"latency_p{q}_ms": percentile(latencies, q) for q in (50, 90, 99)}
        wall_s = (counted[-1]["t_end_ns"] - counted[0]["t_start_ns"]) / 1e9
        figures["throughput_ips"] = len(counted) / wall_s if wall_s > 0 else None
        return figures, {"latency_ms": spread(latencies)}, cv_pct(latencies)

    def samples(self, counted: list[dict], metrics: dict) -> dict[str, list[float]]:
        return {"latency_p50_ms": [t["duration_s"] * 1e3 for t in counted]}

    def windows(self, counted: list[dict], phases: dict) -> list[tuple[float, float]]:
        """The whole counted span (inferences follow one another)."""
        if counted and counted[0].get("t_start_ns") and counted[-1].get("t_end_ns"):
            return [(ns_to_s(counted[0]["t_start_ns"]), ns_to_s(counted[-1]["t_end_ns"]))]
        return []

    def energy(self, pe, trace, counted: list[dict], phases: dict, figures: dict, missing: dict, details: dict) -> list:
        """The counted span's net energy per inference; no prefill or decode."""
        whole = pe.window(ns_to_s(counted[0]["t_start_ns"]), ns_to_s(counted[-1]["t_end_ns"])) if counted else None
        n = len(counted)
        figures["energy_j"] = whole["net_j"] / n if whole and whole["net_j"] is not None else None
        if figures["energy_j"] is None:
            missing["energy_j"] = (whole or {}).get("reason", "no counted trials")
        details["counted_window"] = whole
        details["raw"] = {"energy_j": whole["raw_j"] / n if whole and whole["raw_j"] is not None else None}
        for column in ("energy_prefill_j", "energy_decode_j", "j_per_token"):
            missing[column] = "not applicable to runtime onnxruntime"
            figures[column] = None
        return [whole] if whole else []
