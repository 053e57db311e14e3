"""Parse what llama.cpp's `llama-perplexity` prints, on the host (a phone has no Python).

Written from llama.cpp's tools/perplexity/perplexity.cpp (examples/perplexity before 2025), every form since
the KL-divergence mode appeared (January 2024):

- perplexity mode: the running value after each chunk, `[%d]%.4lf,` on one line (LOG, stdout), then
  `Final estimate: PPL = %.4lf +/- %.5lf` (LOG_INF, stderr; from late 2023 on; before, the last running value
  is the estimate and no error is printed). llama.cpp's asynchronous log can lose its last lines at exit
  (upstream issue 22142), and the final line may follow other text on the same line ("ETA ...Final ...");
- KL-divergence mode (`--kl-divergence-base F --kl-divergence`): a table with one row per chunk of running
  values. Current builds: `%4d    %9.4lf ± %9.4lf    %10.5lf ± %10.5lf    %10.5lf ± %10.5lf    %6.3lf ± %6.3lf %
  %6.3lf ± %6.3lf %` (PPL(Q), ln(PPL(Q)/PPL(base)), KL, RMS Δp, same top p in %); early 2024 builds:
  `%4d    %10.4lf    %10.5lf ± %10.5f    %10.5f ± %10.5lf    %.5f ± %.5f` (no PPL error, no Δp, same top as a
  fraction). Then, from 100 scored tokens only, the statistics: current `Mean PPL(Q) : v ± u`,
  `Mean PPL(Q)/PPL(base) : v ± u`, `Mean    KLD: v ± u`, `Maximum KLD: v`, `99.0%   KLD: v`, `Median  KLD: v`,
  `Same top p: v ± u %`; early `Average: v ±u`, `Median : v`, `Maximum: v`, `KLD_99 : v`.

- multiple-choice mode (`--multiple-choice -f tasks.bin`, since January 2024): `there are %u tasks in prompt`
  (LOG_INF), a header `task\tacc_norm`, then after each task `%d\t%.8lf` (tasks done, running accuracy in %),
  then `Final result: %.4f +/- %.4f` (LOG_INF; printed when every task was asked for, or 100 or more).

Both perplexity modes announce their chunk count first (`calculating perplexity over N chunks`, `computing over N
chunks`, LOG_INF). A line that is not one of these is skipped; a chunk row of another shape is skipped and
listed in "unparsed". A text with no figure read, or one that ends before the chunks it announced with no final
figures (a lost log tail), raises PerplexityOutputError with its last lines. Standard library only.
"""

from __future__ import annotations

import math
import re

__all__ = ["PerplexityOutputError", "parse_perplexity", "parse_kl_divergence", "parse_multiple_choice", "chunk_means"]

NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf)"
PM = r"\s*(?:±|\+/-|\+-)\s*"  # llama.cpp prints "±" (UTF-8) in the KL tables, "+/-" in the final estimate

_FINAL = re.compile(r"Final estimate: PPL = " + NUM + r"(?:" + PM + NUM + r")?")
_RUNNING = re.compile(r"\[(\d+)\]" + NUM + ",")
_ANNOUNCED = re.compile(r"(?:calculating perplexity|computing) over (\d+) chunks")  # LOG_INF before the first chunk
_STATS = {  # key -> pattern of the statistics block (current builds, then early 2024 builds)
    "ppl": re.compile(r"^Mean PPL\(Q\)\s*:\s*" + NUM + PM + NUM, re.M),
    "ppl_ratio_tool": re.compile(r"^Mean PPL\(Q\)/PPL\(base\)\s*:\s*" + NUM, re.M),
    "ppl_base_tool": re.compile(r"^Mean PPL\(base\)\s*:\s*" + NUM, re.M),
    "kld_mean": re.compile(r"^(?:Mean\s+KLD:|Average:)\s*" + NUM + PM + NUM, re.M),
    "kld_max": re.compile(r"^(?:Maximum KLD:|Maximum:)\s*" + NUM, re.M),
    "kld_p99": re.compile(r"^(?:99\.0%\s+KLD:|KLD_99\s*:)\s*" + NUM, re.M),
    "kld_median": re.compile(r"^(?:Median\s+KLD:|Median\s*:)\s*" + NUM, re.M),
    "top1_agree_pct": re.compile(r"^Same top p:\s*" + NUM + PM + NUM + r"\s*%", re.M),
}


class PerplexityOutputError(ValueError):
    """llama-perplexity's output holds none of the figures asked for."""


def _float(text: str) -> float:
    return float(text)


def _tail(text: str, n: int = 8) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "nothing"


def parse_perplexity(text: str) -> dict:
    """Perplexity mode: {"ppl", "ppl_stderr" (None where the build prints none), "running": [running PPL after
    each chunk], "n_chunks", "source": "final estimate" | "last running value"}. Raises PerplexityOutputError
    (with the text's last lines) when neither a final estimate nor a running value is there."""
    running = [(int(i), _float(v)) for i, v in _RUNNING.findall(text)]
    values = [v for _, v in running]
    final = _FINAL.search(text)
    announced = _announced(text)
    if final:
        ppl, err = _float(final.group(1)), final.group(2)
        out = {"ppl": ppl, "ppl_stderr": _float(err) if err else None, "source": "final estimate"}
    elif values and (announced is None or len(values) >= announced):
        out = {"ppl": values[-1], "ppl_stderr": None, "source": "last running value (no final estimate line)"}
    elif values:  # the log lost its last lines (llama.cpp issue 22142): a running value of fewer chunks is not it
        raise PerplexityOutputError(
            f"llama-perplexity's output ends after {len(values)} of the {announced} chunks it announced, with no "
            f"final estimate: {_tail(text)}"
        )
    else:
        raise PerplexityOutputError(f"no perplexity in llama-perplexity's output: {_tail(text)}")
    out.update(running=values, n_chunks=len(values) or None)
    return out


def _announced(text: str) -> int | None:
    m = _ANNOUNCED.search(text)
    return int(m.group(1)) if m else None


def _chunk_row(line: str) -> list[float] | None:
    """The numbers of a KL table row (the chunk number first), or None when the line is not a row."""
    parts = line.replace("±", " ").replace("%", " ").split()
    if not parts or not parts[0].isdigit():
        return None
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


def parse_kl_divergence(text: str) -> dict:
    """KL-divergence mode: {"ppl", "ppl_stderr", "kld_mean", "kld_mean_stderr", "kld_p99", "kld_max",
    "kld_median", "top1_agree_pct", "ppl_ratio_tool", "ppl_base_tool" (llama-perplexity's own ratio and base
    PPL, from the base file's 16-bit log-probabilities), "chunks": [{"chunk", "ppl", "kld_mean",
    "top1_agree_pct"} running values], "unparsed": [rows of another shape], "missing": {key: why}}. Figures
    absent from the output are None with the reason in "missing" (the statistics need 100 scored tokens: below
    that the last chunk row's running values are used). Raises PerplexityOutputError when no KL figure is
    there."""
    chunks, unparsed = [], []
    for line in text.splitlines():
        row = _chunk_row(line.strip())
        if row is None:
            continue
        if len(row) == 11:  # current: i ppl ±u lnr ±u kl ±u dp ±u top% ±u
            chunks.append({"chunk": int(row[0]), "ppl": row[1], "kld_mean": row[5], "top1_agree_pct": row[9]})
        elif len(row) == 8:  # early 2024: i ppl lnr ±u kl ±u top ±u (top as a fraction)
            chunks.append({"chunk": int(row[0]), "ppl": row[1], "kld_mean": row[4], "top1_agree_pct": 100 * row[6]})
        elif "." in line:  # a row of numbers of a shape not known here; a plain counter line is not a row
            unparsed.append(line.strip())
    out: dict = dict.fromkeys(
        ("ppl", "ppl_stderr", "kld_mean", "kld_mean_stderr", "kld_p99", "kld_max", "kld_median", "top1_agree_pct",
         "ppl_ratio_tool", "ppl_base_tool")
    )  # fmt: skip
    missing: dict = {}
    for key, pattern in _STATS.items():
        m = pattern.search(text)
        if m:
            out[key] = _float(m.group(1))
            if key == "ppl":
                out["ppl_stderr"] = _float(m.group(2))
            elif key == "kld_mean":
                out["kld_mean_stderr"] = _float(m.group(2))
    if out["kld_mean"] is None and not chunks:
        raise PerplexityOutputError(f"no KL divergence in llama-perplexity's output: {_tail(text)}")
    announced = _announced(text)
    if out["kld_mean"] is None and announced is not None and len(chunks) < announced:
        raise PerplexityOutputError(
            f"llama-perplexity's output ends after {len(chunks)} of the {announced} chunks it announced, with no "
            f"statistics: {_tail(text)}"
        )
    last = chunks[-1] if chunks else {}
    for key in ("ppl", "kld_mean", "top1_agree_pct"):
        if out[key] is None and key in last:
            out[key] = last[key]
            missing[f"{key}_source"] = "the last chunk row's running value (no statistics block)"
    for key in ("kld_p99", "kld_max", "kld_median"):
        if out[key] is None:
            missing[key] = (
                "llama-perplexity prints KL percentiles only from 100 scored tokens (or its log lost the lines)"
            )
    out.update(chunks=chunks, unparsed=unparsed, missing=missing)
    return out


def chunk_means(running: list[float], log: bool) -> list[float]:
    """Per-chunk means from running means over equal-sized chunks: chunk k's mean is k*r_k - (k-1)*r_(k-1).
    log=True for running perplexities (their log is the running mean NLL), giving per-chunk mean NLL in nats.
    Precision: that of the printed values (4 decimals for PPL, 5 for KL), multiplied by k."""
    means, previous = [], 0.0
    for k, value in enumerate(running, start=1):
        level = math.log(value) if log else value
        means.append(k * level - (k - 1) * previous)
        previous = level
    return means


_TASKS = re.compile(r"there are (\d+) tasks in prompt")
_MC_ROW = re.compile(r"^(\d+)\t" + NUM + r"\s*$", re.M)
_MC_FINAL = re.compile(r"Final result: " + NUM + r"(?:" + PM + NUM + r")?")


def parse_multiple_choice(text: str) -> dict:
    """Multiple-choice mode: {"accuracy_pct" (the final result, else the last running value), "stderr_pct",
    "hits": [per task, in the order the tasks were given: was the best-scored choice the right one], "n",
    "announced"}. The per-task outcome comes from the running accuracy: correct after k tasks =
    round(acc_k x k / 100). Raises PerplexityOutputError when no task row is there, when rows are not 1, 2, 3...,
    or when fewer rows than announced tasks came with no final result (a lost log tail)."""
    rows = [(int(k), _float(v)) for k, v in _MC_ROW.findall(text)]
    if not rows:
        raise PerplexityOutputError(f"no multiple-choice result in llama-perplexity's output: {_tail(text)}")
    if [k for k, _ in rows] != list(range(1, len(rows) + 1)):
        raise PerplexityOutputError(f"multiple-choice rows out of order ({[k for k, _ in rows][:8]}...): {_tail(text)}")
    m = _TASKS.search(text)
    announced = int(m.group(1)) if m else None
    final = _MC_FINAL.search(text)
    if final is None and announced is not None and len(rows) < announced:
        raise PerplexityOutputError(
            f"llama-perplexity's output ends after {len(rows)} of the {announced} tasks it announced, with no final "
            f"result: {_tail(text)}"
        )
    correct = [round(acc * k / 100) for k, acc in rows]
    hits = [c - p > 0 for c, p in zip(correct, [0, *correct[:-1]], strict=True)]
    return {
        "accuracy_pct": _float(final.group(1)) if final else rows[-1][1],
        "stderr_pct": _float(final.group(2)) if final and final.group(2) else None,
        "hits": hits,
        "n": len(rows),
        "announced": announced,
    }
