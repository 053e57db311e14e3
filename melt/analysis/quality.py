"""Quality figures of one case (the summary's quality columns), from what the agent measured after the speed
trials (agent.json "quality", melt.runtimes.llama_quality) and the case's quality block."""

from __future__ import annotations

from melt import registry
from melt.analysis.strategies import for_runtime

# summary column -> (what the recipe asks for, the block the agent measured, the figure in it)
COLUMNS = {
    "ppl": ("perplexity", "perplexity", "ppl"),
    "accuracy_pct": ("choices", "choices", "accuracy_pct"),
    "accuracy_norm_pct": ("choices", "choices", "accuracy_norm_pct"),
    "accuracy_tok_pct": ("choices", "choices", "accuracy_tok_pct"),
    "kld_mean": ("reference", "kld", "kld_mean"),
    "kld_p99": ("reference", "kld", "kld_p99"),
    "top1_agree_pct": ("reference", "kld", "top1_agree_pct"),
    "ppl_ratio": ("reference", "kld", "ppl_ratio"),
}


def quality_figures(case: dict, agent: dict) -> tuple[dict, dict, dict]:
    """(figures, missing, details): figures {column: value or None} for COLUMNS; missing {column: why it is
    empty}; details: agent.json's quality block as measured (perplexity: ppl, ppl_stderr, tokens_scored, ...;
    choices: accuracy_pct, accuracy_norm_pct, their standard errors, n, per-item log-likelihoods; kld: kld_mean
    (nats per token), kld_p99, kld_max, kld_upper_mean, top1_agree_pct, ppl_ratio, top_k)."""
    asked = case.get("quality") or {}
    measured = agent.get("quality") or {}
    figures: dict = dict.fromkeys(COLUMNS)
    missing: dict = {}
    runtime = case.get("runtime")
    asks = for_runtime(runtime).quality_asks
    for column, (asked_key, block, key) in COLUMNS.items():
        producers = registry.metric(column).runtimes
        if not asks:
            missing[column] = f"not applicable to runtime {runtime}"
        elif asked_key not in asks:
            missing[column] = f"not measured by runtime {runtime}: it measures quality.{', quality.'.join(asks)}"
        elif runtime not in producers:  # another runtime's way of scoring the same thing (the registry says whose)
            missing[column] = f"not measured by runtime {runtime}: {column} is runtime {', '.join(sorted(producers))}'s"
        elif asked_key not in asked:
            missing[column] = f"not measured: the recipe asks for no quality.{asked_key}"
        elif block not in measured:
            missing[column] = "not measured: the agent stopped before the quality step"
        elif measured[block].get("error"):
            missing[column] = measured[block]["error"]
        elif measured[block].get(key) is None:
            missing[column] = f"not measurable: no {block} scored"
        else:
            figures[column] = measured[block][key]
    return figures, missing, measured
