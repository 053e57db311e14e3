"""What every runtime's analysis provides (melt.analysis.strategies)."""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod


def ns_to_s(ns: int) -> float:
    """A device clock stamp in ns as trace seconds."""
    return ns / 1e9


def median_of(values: list) -> float | None:
    """The median of the values that are not None; None when none is."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class RuntimeAnalysis(ABC):
    runtime: str = ""
    cv_metric: str = "decode_tok_s"  # the figure whose spread judges validity (metrics.json cv_metric)
    quality_asks: tuple[str, ...] = ()  # the recipe's quality keys this runtime measures (analysis.quality)
    # the sustained protocol (analysis.sustained): the (burst, sustained) figures, and whether lower is better
    sustained_figures: tuple[str, str] = ("burst_decode_tok_s", "sustained_decode_tok_s")
    sustained_lower_is_better = False

    @abstractmethod
    def figures(self, counted: list[dict]) -> tuple[dict, dict, float | None]:
        """(summary figures {column: value}, spreads {name: stats.spread}, cv in % of cv_metric) from the
        counted trials (trials.jsonl rows, warm-ups left out)."""

    @abstractmethod
    def samples(self, counted: list[dict], metrics: dict) -> dict[str, list[float]]:
        """{metric: one value per counted trial} for melt compare (metrics: the case's metrics.json)."""

    @abstractmethod
    def windows(self, counted: list[dict], phases: dict) -> list[tuple[float, float]]:
        """The spans (trace seconds) in which the counted trials were measured (phases: agent.json's)."""

    @abstractmethod
    def energy(self, pe, trace, counted: list[dict], phases: dict, figures: dict, missing: dict, details: dict) -> list:
        """Fill the energy columns of figures (or missing, with why) and details from pe (analysis.energy.
        PhaseEnergy over trace, an analysis.trace.Trace); returns the energy windows power_avg_w averages over."""

    def trial_value(self, t: dict) -> float | None:
        """One trial's sustained figure (decode tok/s, or latency ms); None where the trial has none."""
        return t.get("decode_tok_s")

    def summarise(self, values: list[float]) -> float:
        """The sustained figure of a window's trial values: their median."""
        return statistics.median(values)

    def counted_for_validity(self, counted: list[dict], protocol: dict) -> tuple[int, dict]:
        """(trials counted against protocol.repetitions, the protocol validity judges against)."""
        return len(counted), protocol

    def missing_extra(self, counted: list[dict]) -> dict:
        """{figure: why it is empty} for figures outside the summary (metrics.json spread-only ones)."""
        return {}

    def not_measured(self, metric) -> str | None:
        """Why a registry metric (melt.registry.Metric) this runtime cannot give is empty, where it is not simply
        another runtime's figure; None otherwise."""
        return None
