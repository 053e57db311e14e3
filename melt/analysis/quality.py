"""Quality figures of one case (the summary's quality columns), from what the agent measured after the speed
trials (agent.json "quality", melt.runtimes.llama_quality) and the case's quality block."""

from __future__ import annotations


def quality_figures(case: dict, agent: dict) -> tuple[dict, dict, dict]:
    """(figures, missing, details): figures {ppl}; missing {column: why it is empty}; details: agent.json's
    quality block as measured (perplexity: ppl, ppl_stderr, tokens_scored, n_chunks, n_ctx, text_sha256, ...)."""
    asked = case.get("quality") or {}
    measured = agent.get("quality") or {}
    figures: dict = {"ppl": None}
    missing: dict = {}
    if case.get("runtime") != "llama_cpp":
        missing["ppl"] = f"not applicable to runtime {case.get('runtime')}"
    elif "perplexity" not in asked:
        missing["ppl"] = "not measured: the recipe asks for no quality.perplexity"
    elif "perplexity" not in measured:
        missing["ppl"] = "not measured: the agent stopped before the quality step"
    elif measured["perplexity"].get("error"):
        missing["ppl"] = measured["perplexity"]["error"]
    else:
        figures["ppl"] = measured["perplexity"]["ppl"]
    return figures, missing, measured
