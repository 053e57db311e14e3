"""What the report reads from results folders: runs, their cases, and the per-trial figures the plots
need (inter-token gaps, prompt lengths, per-trial energy). Only files, no device."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from melt.results.layout import read_json, read_trials
from melt.results.reader import read_run


@dataclass
class CaseView:
    """One case of one run, as the report shows it."""

    run_id: str
    case_id: str
    status: str  # ok | failed | pending | running
    reason: str | None
    device: str
    model: str
    label: str
    path: Path
    case: dict = field(default_factory=dict)
    metrics: dict | None = None

    @property
    def runtime(self) -> str:
        return self.case.get("runtime") or (self.metrics or {}).get("runtime", "")

    @property
    def summary(self) -> dict:
        return (self.metrics or {}).get("summary", {})

    @property
    def missing(self) -> dict:
        return (self.metrics or {}).get("missing", {})

    @property
    def validity(self) -> str:
        if self.status != "ok":
            return self.status
        return self.summary.get("validity") or "invalid"

    @property
    def validity_reasons(self) -> list[str]:
        if self.status != "ok":
            return [self.reason or f"case {self.status}"]
        return (self.metrics or {}).get("validity", {}).get("reasons", [])

    @property
    def params_text(self) -> str:
        """The case's matrix point without the model id: what tells it apart from its siblings."""
        return self.label[len(self.model) :].strip() if self.label.startswith(self.model) else self.label

    def value(self, metric: str) -> float | None:
        v = self.summary.get(metric)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def why_missing(self, metric: str) -> str:
        if self.status != "ok":
            return f"case {self.status}: {self.reason or 'no result'}"
        return self.missing.get(metric, "not measured")

    def spread(self, metric: str) -> dict | None:
        """p10/p90 etc. of a summary figure where metrics.json keeps them."""
        key = {"latency_p50_ms": "latency_ms", "itl_p50_ms": "itl_ms"}.get(metric, metric)
        s = (self.metrics or {}).get("spread", {}).get(key)
        return s if s and s.get("n", 0) > 1 else None

    @cached_property
    def trials(self) -> list[dict]:
        """Counted trials (warm-ups are never shown as results)."""
        return [t for t in read_trials(self.path / "trials.jsonl") if not t.get("warmup")]

    @cached_property
    def agent(self) -> dict:
        path = self.path / "agent.json"
        return read_json(path) if path.is_file() else {}

    def itl_ms(self) -> np.ndarray:
        """Gaps between generated tokens, pooled over counted trials (as metrics.py pools them)."""
        if self.runtime != "llama_cpp":
            return np.empty(0)
        gaps = [
            np.diff(np.asarray(t["token_ns"], dtype=np.int64)) for t in self.trials if len(t.get("token_ns", [])) > 1
        ]
        return np.concatenate(gaps) / 1e6 if gaps else np.empty(0)

    def prompt_tokens(self) -> float | None:
        """The workload's prompt length, or the median real prompt's length in tokens."""
        n = self.case.get("workload", {}).get("prompt_tokens")
        if isinstance(n, (int, float)):
            return n
        lengths = [t["n_prompt"] for t in self.trials if t.get("n_prompt")]
        return statistics.median(lengths) if lengths else None

    def j_per_token_spread(self) -> dict | None:
        """p10/p90 of per-trial decode energy per token (metrics.json's per-trial windows)."""
        per = []
        for t in (self.metrics or {}).get("telemetry", {}).get("trials", []) or []:
            net, n = (t.get("decode") or {}).get("net_j"), t.get("n_decode_tokens")
            if net is not None and n:
                per.append(net / n)
        if len(per) < 2:
            return None
        q10, q90 = np.percentile(per, [10, 90])
        return {"p10": float(q10), "p90": float(q90), "n": len(per)}


@dataclass
class RunView:
    path: Path
    manifest: dict
    cases: list[CaseView]

    @property
    def run_id(self) -> str:
        return self.manifest.get("run_id", self.path.name)

    @property
    def recipe_names(self) -> list[str]:
        recipes = self.manifest.get("recipes") or {}
        if recipes:
            return list(recipes)
        return [self.manifest.get("recipe", {}).get("name", "?")]

    @property
    def recipe_descriptions(self) -> list[str]:
        recipes = self.manifest.get("recipes") or {"": self.manifest.get("recipe", {})}
        return [d for r in recipes.values() if (d := (r.get("resolved") or {}).get("description"))]


def load_run(run_dir: Path) -> RunView:
    """The run folder for the page, read through melt.results.reader (InputError for a newer schema)."""
    run = read_run(run_dir)
    cases = [
        CaseView(
            run_id=c.run_id,
            case_id=c.case_id,
            status=c.status,
            reason=c.reason,
            device=c.device or "?",
            model=c.model or "?",
            label=c.label,
            path=c.folder,
            case=c.case,
            metrics=c.metrics,
        )
        for c in run.cases
    ]
    return RunView(run.path, run.manifest, cases)
