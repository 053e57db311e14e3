"""The one reader of run folders: run.json, and per case its case.json and metrics.json, checked against the
results schema this melt reads (melt.SCHEMA_VERSION, DESIGN.md "Results layout"). `melt compare`, the catalog,
the report and the exports all read runs through it, so a run written by a newer melt is refused in one place,
with the file and the key, rather than misread in four.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from melt import SCHEMA_VERSION
from melt.errors import InputError, Problem
from melt.results.layout import RunDir, read_json, read_trials


@dataclass(frozen=True)
class CaseRecord:
    """One case of a run as its files say: the run.json entry (status, reason, device, model, label), its
    case.json (empty where the case never started) and, for a finished case, its metrics.json."""

    run_id: str
    case_id: str
    status: str
    reason: str | None
    device: str
    model: str
    label: str
    folder: Path
    case: dict
    metrics: dict | None

    @property
    def runtime(self) -> str | None:
        return self.case.get("runtime")

    @property
    def summary(self) -> dict:
        """metrics.json's summary row ({} where there is none)."""
        return (self.metrics or {}).get("summary", {})

    def trials(self) -> list[dict]:
        """trials.jsonl's rows, warm-ups included ([] where there is none)."""
        path = self.folder / "trials.jsonl"
        return read_trials(path) if path.is_file() else []


@dataclass(frozen=True)
class CaseData:
    """One case of one run as a comparison sees it: what it is, how it ended, its per-trial samples
    ({metric: [values]}, melt.analysis.samples)."""

    run_id: str
    case_id: str
    device: str
    model: str
    label: str
    status: str
    reason: str | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    outputs: list[list[int]] | None = None  # the greedy tokens per prompt (recipe quality.outputs), where kept
    output_text: list[str] | None = None  # the same, as text
    # per scored unit, for paired tests between runs: {"ppl": per-token NLL, "kld_mean": per-token KL,
    # "accuracy_pct": per-item right/wrong, "accuracy_norm_pct": the same by acc_norm}
    paired: dict[str, list] = field(default_factory=dict)
    # what a paired list's units are where they are not the registry's (llama_cpp_cli scores windows, not tokens)
    paired_unit: dict[str, str] = field(default_factory=dict)
    # why its speed figures may not be the machine's own: melt saw other work during its trials (busy.busy_reasons)
    shared: list[str] = field(default_factory=list)


def windowed(metrics: dict | None) -> dict[str, str]:
    """{metric: "windows"} for the paired lists paired_units took per window rather than per token."""
    quality = (metrics or {}).get("quality") or {}
    out = {}
    if not (quality.get("perplexity") or {}).get("nll") and (quality.get("perplexity") or {}).get("chunk_nll"):
        out["ppl"] = "windows"
    if not (quality.get("kld") or {}).get("per_token") and (quality.get("kld") or {}).get("chunk_kld"):
        out["kld_mean"] = "windows"
    return out


def paired_units(metrics: dict | None) -> dict[str, list]:
    """What a case's quality figures were computed from, unit by unit (metrics.json quality): see CaseData.paired."""
    quality = (metrics or {}).get("quality") or {}
    out: dict[str, list] = {}
    if (quality.get("perplexity") or {}).get("nll"):
        out["ppl"] = quality["perplexity"]["nll"]
    elif (quality.get("perplexity") or {}).get("chunk_nll"):  # llama_cpp_cli: per window (paired_unit)
        out["ppl"] = quality["perplexity"]["chunk_nll"]
    if (quality.get("kld") or {}).get("per_token"):
        out["kld_mean"] = quality["kld"]["per_token"]
    elif (quality.get("kld") or {}).get("chunk_kld"):
        out["kld_mean"] = quality["kld"]["chunk_kld"]
    choices = quality.get("choices") or {}
    if choices.get("hits_tok"):  # llama_cpp_cli: llama-perplexity's per-item right/wrong
        out["accuracy_tok_pct"] = choices["hits_tok"]
    items = choices.get("items")
    if items:
        out["accuracy_pct"] = [i["pred"] == i["answer"] for i in items]
        out["accuracy_norm_pct"] = [i["pred_norm"] == i["answer"] for i in items]
    return out


def kept_outputs(metrics: dict | None) -> tuple[list[list[int]] | None, list[str] | None]:
    """The greedy outputs a case kept (metrics.json quality.outputs): (tokens per prompt, text per prompt), or
    (None, None) where it kept none."""
    outputs = ((metrics or {}).get("quality") or {}).get("outputs") or {}
    items = outputs.get("items")
    if not items:
        return None, None
    return [i["tokens"] for i in items], [i.get("text", "") for i in items]


@dataclass(frozen=True)
class RunRecord:
    """A run folder: its path, run.json (the manifest) and its cases in run.json's order."""

    path: Path
    manifest: dict

    @property
    def run_id(self) -> str:
        return self.manifest.get("run_id", self.path.name)

    @cached_property
    def cases(self) -> list[CaseRecord]:
        run = RunDir(self.path)
        out = []
        for case_id, entry in self.manifest.get("cases", {}).items():
            folder = run.case_dir(case_id)
            case = read_json(folder / "case.json") if (folder / "case.json").is_file() else {}
            status = entry.get("status", "pending")
            out.append(
                CaseRecord(
                    run_id=self.run_id,
                    case_id=case_id,
                    status=status,
                    reason=entry.get("reason"),
                    device=case.get("device") or entry.get("device", ""),
                    model=case.get("model") or entry.get("model", ""),
                    label=case.get("label") or entry.get("label", case_id),
                    folder=folder,
                    case=case,
                    metrics=run.metrics(case_id) if status == "ok" else None,
                )
            )
        return out


def check_schema(manifest: dict, path: Path) -> None:
    """Raises InputError (exit 2) when run.json's schema_version is not an integer or is newer than this melt
    reads. A run.json without one is read as version 1 (the first layout)."""
    version = manifest.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError([Problem(str(path), "schema_version", "a positive integer", repr(version))])
    if version > SCHEMA_VERSION:
        raise InputError(
            [
                Problem(
                    str(path),
                    "schema_version",
                    f"at most {SCHEMA_VERSION} (this melt's results layout; the run was written by a newer melt)",
                    str(version),
                )
            ]
        )


def read_run(run_dir: Path, manifest: dict | None = None) -> RunRecord:
    """The run folder run_dir, its schema checked (check_schema). manifest: its run.json where the caller has
    read it already. Raises InputError for a newer or malformed schema_version, OSError / ValueError where
    run.json cannot be read."""
    run = RunDir(Path(run_dir))
    manifest = manifest if manifest is not None else run.read()
    check_schema(manifest, run.run_json)
    return RunRecord(run.path, manifest)
