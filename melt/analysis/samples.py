"""Per-trial samples of the figures a comparison tests: one value per counted trial (ONNX: per
inference), from the raw files with the same definitions metrics.py summarises. A run-level figure
(load time, peak RSS) has one value per run and is kept too, marked as such.

The per-trial medians equal summary.csv's (both come from the same trial rows); inter-token
latency is tested on each trial's median gap, the summary pools the gaps of all trials.
"""

from __future__ import annotations

from melt import registry
from melt.analysis.strategies import for_runtime
from melt.analysis.sustained import is_sustained
from melt.analysis.sustained import samples as sustained_samples

# metric -> "higher" or "lower" is better, for every metric a comparison looks at (melt.registry)
DIRECTION = registry.compared()
# one value per run: judged only against earlier runs (the catalog's history)
RUN_LEVEL = registry.judged_as("run") + registry.judged_as("info")
# shown with their change, never judged: a few milliseconds of load (page cache, the case's place
# in the run) and a tail percentile or rate of one run swing between identical runs more than the
# rest; the per-inference latency distribution (latency_p50_ms) is what is judged for ONNX models
INFORMATION_ONLY = registry.judged_as("info")


def samples_of(case: dict, trials: list[dict], metrics: dict) -> dict[str, list[float]]:
    """{metric: per-trial values} from a case's already-read case.json, trials and metrics.json."""
    counted = [t for t in trials if not t.get("warmup")]
    out = for_runtime(case["runtime"]).samples(counted, metrics)
    if is_sustained(case):  # the sustained window's trials (melt.analysis.sustained)
        out.update(sustained_samples(case["runtime"], counted, metrics.get("sustained") or {}))
    summary = metrics.get("summary", {})
    for metric in RUN_LEVEL:
        if summary.get(metric) is not None:
            out[metric] = [summary[metric]]
    return {k: v for k, v in out.items() if v}
