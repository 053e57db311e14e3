"""results/<run_id>/{run.json, cases/<case_id>/{case.json, trials.jsonl, metrics.json}, summary.csv}.

Raw first, derived second: run.json and the agent's files are written as the run goes; metrics
and summary.csv are derived from them and can be re-derived without the device.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from melt import SCHEMA_VERSION
from melt.errors import InputError, Problem
from melt.registry import ID_COLUMNS
from melt.registry import names as metric_names

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def write_json(path: Path, data: dict) -> None:
    """Atomic: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_trials(path: Path) -> list[dict]:
    """trials.jsonl; a torn last line (agent killed mid-write) is dropped, not fatal."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class RunDir:
    """One run's folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def summary_csv(self) -> Path:
        return self.path / "summary.csv"

    def case_dir(self, case_id: str) -> Path:
        return self.path / "cases" / case_id

    def exists(self) -> bool:
        return self.run_json.is_file()

    def read(self) -> dict:
        return read_json(self.run_json)

    def write(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.run_json, {"schema_version": SCHEMA_VERSION, **manifest})

    def metrics(self, case_id: str) -> dict | None:
        path = self.case_dir(case_id) / "metrics.json"
        return read_json(path) if path.is_file() else None

    def write_summary(self, manifest: dict) -> list[dict]:
        """One row per finished case: ids, the case's params, then DESIGN.md's metric columns. flash_attn is
        as llama.cpp ran it, for every llama.cpp case (_flash_attn_cell), not only those that set it."""
        rows, param_names = [], []
        for case_id, entry in manifest["cases"].items():
            if entry["status"] != "ok":
                continue
            metrics = self.metrics(case_id)
            case = read_json(self.case_dir(case_id) / "case.json")
            point = {**case.get("workload", {}), **case.get("params", {})}
            point = {k: v for k, v in point.items() if not isinstance(v, (dict, list))}
            flash_attn = _flash_attn_cell((metrics or {}).get("effective_params"))
            if flash_attn is not None:
                point["flash_attn"] = flash_attn
            for name in point:
                if name not in param_names:
                    param_names.append(name)
            row = {
                "case_id": case_id,
                "device": case["device"],
                "model": case["model"],
                "runtime": case["runtime"],
            }
            row["label"] = case.get("label", "")
            row.update(point)
            row.update(metrics["summary"])
            rows.append(row)
        columns = ID_COLUMNS + ["label"] + [p for p in param_names if p not in metric_names()] + metric_names()
        with self.summary_csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _cell(row.get(k)) for k in columns})
        return rows


def _flash_attn_cell(effective: dict | None) -> str | None:
    """Flash attention as llama.cpp ran it, with how it came to be where that was not a plain on / off:
    "on (auto)" (auto, asked or llama.cpp's default, became on), "off (asked on)", "? (auto)" (llama.cpp did
    not say). None for a case whose effective_params have no flash_attn (another runtime, an older run)."""
    if not effective or "flash_attn" not in effective:
        return None
    resolved = effective["flash_attn"] or "?"
    asked = (effective.get("asked") or {}).get("flash_attn")
    if asked in (None, "auto"):
        return f"{resolved} (auto)"
    return resolved if asked == resolved else f"{resolved} (asked {asked})"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise InputError(Problem("--run-id", "", "letters, digits, '.', '_' or '-' (no slashes)", repr(run_id)))
    return run_id


def list_runs(results_dir: Path) -> list[dict]:
    """Every run under results_dir, newest first, with its case counts."""
    runs = []
    for run_json in Path(results_dir).glob("*/run.json"):
        try:
            run = read_json(run_json)
        except (OSError, ValueError):
            continue
        statuses = [c["status"] for c in run.get("cases", {}).values()]
        runs.append(
            {
                "run_id": run.get("run_id", run_json.parent.name),
                "path": str(run_json.parent),
                "recipe": run.get("recipe", {}).get("name"),
                "devices": list(run.get("devices", {})),
                "started_at": run.get("started_at"),
                "status": run.get("status"),
                "cases_ok": statuses.count("ok"),
                "cases_failed": statuses.count("failed"),
                "cases_total": len(statuses),
            }
        )
    return sorted(runs, key=lambda r: r.get("started_at") or "", reverse=True)
