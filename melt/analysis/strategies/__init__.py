"""One analysis strategy per runtime: how its counted trials become summary figures, per-trial samples for
melt compare, the windows in which it was measured, and its energy figures (melt issue 14: the
`runtime == ...` branches of analysis/metrics.py, samples.py and telemetry_metrics.py, each in one place).

A new runtime is one module here with a RuntimeAnalysis subclass, listed in STRATEGIES, plus its registry
entries (melt.registry) for the figures it produces."""

from __future__ import annotations

from melt.analysis.strategies.base import RuntimeAnalysis
from melt.analysis.strategies.llama_cpp import LlamaCppAnalysis
from melt.analysis.strategies.llama_cpp_cli import LlamaCppCliAnalysis
from melt.analysis.strategies.onnxruntime import OnnxAnalysis

STRATEGIES: dict[str, RuntimeAnalysis] = {
    s.runtime: s for s in (LlamaCppAnalysis(), LlamaCppCliAnalysis(), OnnxAnalysis())
}


def for_runtime(runtime: str) -> RuntimeAnalysis:
    """The analysis of `runtime` (case.json's runtime). Raises KeyError for a runtime melt does not know."""
    return STRATEGIES[runtime]


__all__ = ["RuntimeAnalysis", "STRATEGIES", "for_runtime"]
