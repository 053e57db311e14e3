"""runtime llama_cpp_cli: llama.cpp's own tools on a device without Python (melt.runtimes.llama_cpp_cli):
llama-bench's per-repetition samples (ppP for prefill, tgN at depth P for decode), or one llama-completion run per
trial on real prompts, read from llama.cpp's end-of-run timings. Neither time-stamps tokens: no TTFT, ITL or
per-trial energy split."""

from __future__ import annotations

import statistics

from melt.analysis.stats import cv_pct, spread
from melt.analysis.strategies.base import RuntimeAnalysis, median_of, ns_to_s

NOT_FROM_LLAMA_BENCH = "not measured: llama.cpp's tools report totals (no per-token times or memory on phones)"


def _completion(counted: list[dict]) -> bool:
    return any(t.get("mode") == "completion" for t in counted)


def _values(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


class LlamaCppCliAnalysis(RuntimeAnalysis):
    runtime = "llama_cpp_cli"
    quality_asks = ("perplexity", "reference", "choices")

    def figures(self, counted: list[dict]) -> tuple[dict, dict, float | None]:
        if _completion(counted):
            spreads = {k: spread(_values(counted, k)) for k in ("prefill_tok_s", "decode_tok_s", "load_s")}
            figures = {k: (v or {}).get("median") for k, v in spreads.items() if k != "load_s"}
            return figures, spreads, cv_pct(_values(counted, "decode_tok_s"))
        pp = [t["tok_s"] for t in counted if t.get("test") == "pp"]
        tg = [t["tok_s"] for t in counted if t.get("test") == "tg"]
        spreads = {"prefill_tok_s": spread(pp), "decode_tok_s": spread(tg)}
        figures = {k: (v or {}).get("median") for k, v in spreads.items()}
        return figures, spreads, cv_pct(tg)

    def samples(self, counted: list[dict], metrics: dict) -> dict[str, list[float]]:
        if _completion(counted):
            return {k: _values(counted, k) for k in ("prefill_tok_s", "decode_tok_s")}
        return {
            "prefill_tok_s": [t["tok_s"] for t in counted if t.get("test") == "pp"],
            "decode_tok_s": [t["tok_s"] for t in counted if t.get("test") == "tg"],
        }

    def counted_for_validity(self, counted: list[dict], protocol: dict) -> tuple[int, dict]:
        """llama-bench: a repetition is one pp and one tg sample, and it has no minimum duration."""
        n = len(counted)
        if not _completion(counted):
            n = len([t for t in counted if t.get("test") == "tg"])
        return n, {**protocol, "min_duration_s": 0}

    def windows(self, counted: list[dict], phases: dict) -> list[tuple[float, float]]:
        """Each llama-completion run, or llama-bench's prefill and decode runs."""
        if _completion(counted):
            return [
                (ns_to_s(t["t_start_ns"]), ns_to_s(t["t_end_ns"]))
                for t in counted
                if t.get("t_start_ns") and t.get("t_end_ns")
            ]
        return [(ns_to_s(phases[p][0]), ns_to_s(phases[p][1])) for p in ("prefill", "decode") if p in phases]

    def energy(self, pe, trace, counted: list[dict], phases: dict, figures: dict, missing: dict, details: dict) -> list:
        """llama-bench does not stamp its repetitions: per repetition, energy = the mean net power over its run
        (model load and its warm-up included) x the repetition's own time. Said in metrics.json."""
        if _completion(counted):
            details["energy_method"] = "each llama-completion run, from its start to its end (model load included)"
            windows = [
                pe.window(ns_to_s(t["t_start_ns"]), ns_to_s(t["t_end_ns"])) for t in counted if t.get("t_start_ns")
            ]
            details["trials"] = windows
            figures["energy_j"] = median_of([w["net_j"] for w in windows])
            if figures["energy_j"] is None:
                missing["energy_j"] = windows[0].get("reason", "not measurable") if windows else "no trial marks"
            for column in ("energy_prefill_j", "energy_decode_j", "j_per_token"):
                figures[column] = None
                missing[column] = "not measurable: llama-completion does not time-stamp its prefill and decode"
            details["raw"] = {}
            return windows
        details["energy_method"] = "mean net power over each llama-bench run x repetition time"
        out, windows = {}, []
        for phase, test in (("prefill", "pp"), ("decode", "tg")):
            samples = [t for t in counted if t.get("test") == test]
            if phase not in phases or not samples:
                missing[f"energy_{phase}_j"] = f"no {phase} phase marks or samples"
                out[phase] = None
                continue
            w = pe.window(ns_to_s(phases[phase][0]), ns_to_s(phases[phase][1]))
            details[f"{phase}_window"] = w
            if w.get("net_j") is None:
                missing[f"energy_{phase}_j"] = w.get("reason", "not measurable")
                out[phase] = None
                continue
            per_rep_s = statistics.median(t["duration_s"] for t in samples)
            out[phase] = w["net_j"] / w["duration_s"] * per_rep_s
            windows.append(w)
        figures["energy_prefill_j"], figures["energy_decode_j"] = out.get("prefill"), out.get("decode")
        n_gen = next((t["n_gen"] for t in counted if t.get("test") == "tg"), None)
        figures["j_per_token"] = out["decode"] / n_gen if out.get("decode") is not None and n_gen else None
        if figures["j_per_token"] is None:
            missing["j_per_token"] = missing.get("energy_decode_j", "not measurable")
        both = [v for v in out.values() if v is not None]
        figures["energy_j"] = sum(both) if len(both) == 2 else None
        if figures["energy_j"] is None:
            missing["energy_j"] = "needs both the prefill and the decode energy"
        details["raw"] = {}
        return windows

    def not_measured(self, metric) -> str | None:
        """A figure melt's agent measures for llama_cpp (per-token times, load, memory) that the tools do not."""
        return NOT_FROM_LLAMA_BENCH if "llama_cpp" in metric.runtimes else None
