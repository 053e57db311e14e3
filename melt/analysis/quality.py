"""Quality figures of one case (the summary's quality columns), from what the agent measured after the speed
trials (agent.json "quality", melt.runtimes.llama_quality) and the case's quality block."""

from __future__ import annotations

# summary column -> (quality block, the figure in what the agent measured)
COLUMNS = {
    "ppl": ("perplexity", "ppl"),
    "accuracy_pct": ("choices", "accuracy_pct"),
    "accuracy_norm_pct": ("choices", "accuracy_norm_pct"),
}


def quality_figures(case: dict, agent: dict) -> tuple[dict, dict, dict]:
    """(figures, missing, details): figures {column: value or None} for COLUMNS; missing {column: why it is
    empty}; details: agent.json's quality block as measured (perplexity: ppl, ppl_stderr, tokens_scored, ...;
    choices: accuracy_pct, accuracy_norm_pct, their standard errors, n, per-item log-likelihoods)."""
    asked = case.get("quality") or {}
    measured = agent.get("quality") or {}
    figures: dict = dict.fromkeys(COLUMNS)
    missing: dict = {}
    for column, (block, key) in COLUMNS.items():
        if case.get("runtime") != "llama_cpp":
            missing[column] = f"not applicable to runtime {case.get('runtime')}"
        elif block not in asked:
            missing[column] = f"not measured: the recipe asks for no quality.{block}"
        elif block not in measured:
            missing[column] = "not measured: the agent stopped before the quality step"
        elif measured[block].get("error"):
            missing[column] = measured[block]["error"]
        elif measured[block].get(key) is None:
            missing[column] = f"not measurable: no {block} scored"
        else:
            figures[column] = measured[block][key]
    return figures, missing, measured
