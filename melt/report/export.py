"""Text exports of a run: CSV (summary.csv as written), JSON, markdown (fits a CI job summary)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from melt import registry
from melt.results.layout import RunDir
from melt.results.reader import read_run

MD_COLUMNS = [
    ("device", "device", "{}"),
    ("label", "case", "{}"),
    ("flash_attn", "flash attn", "{}"),  # as llama.cpp ran it (summary.csv's cell, e.g. "on (auto)")
    *((m.name, m.heading, m.digits) for m in registry.METRICS if m.digits),  # the registry's markdown metrics
]


def _rows(run_dir: Path) -> list[dict]:
    path = RunDir(run_dir).summary_csv
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _fmt(value: str, fmt: str) -> str:
    if value in ("", None):
        return "–"
    try:
        return fmt.format(float(value)) if fmt != "{}" else value
    except ValueError:
        return value


def _failed(manifest: dict) -> list[tuple[str, dict]]:
    return [(cid, e) for cid, e in manifest.get("cases", {}).items() if e["status"] != "ok"]


def to_markdown(run_dir: Path) -> str:
    manifest = read_run(run_dir).manifest
    rows = _rows(run_dir)
    used = [c for c in MD_COLUMNS if any(r.get(c[0]) not in ("", None) for r in rows)]
    kind = manifest["recipe"].get("kind", "recipe")  # a sweep records itself as the run's recipe
    out = [f"### melt run `{manifest['run_id']}` — {kind} `{manifest['recipe']['name']}`", ""]
    host = manifest.get("host", {}).get("environment", {})
    out.append(f"{len(rows)} cases ok, {len(_failed(manifest))} not ok; status {manifest.get('status')}; "
               f"host {host.get('cpu_model')} ({host.get('cpu_count')} cores)")  # fmt: skip
    out.append("")
    if rows:
        out.append("| " + " | ".join(title for _, title, _ in used) + " |")
        out.append("|" + "|".join("---" for _ in used) + "|")
        for r in rows:
            out.append("| " + " | ".join(_fmt(r.get(key, ""), fmt) for key, _, fmt in used) + " |")
    for cid, entry in _failed(manifest):
        out.append(f"- **{entry['status']}** `{cid}` {entry.get('label', '')}: {entry.get('reason') or 'not run yet'}")
    return "\n".join(out) + "\n"


def to_json(run_dir: Path) -> str:
    run = read_run(run_dir)
    manifest = run.manifest
    metrics_of = {c.case_id: c.metrics for c in run.cases}
    cases = []
    for row in _rows(run_dir):
        metrics = metrics_of.get(row["case_id"]) or {}
        cases.append(
            {
                **row,
                "validity_reasons": metrics.get("validity", {}).get("reasons", []),
                "missing": metrics.get("missing", {}),
            }
        )
    return (
        json.dumps(
            {
                "run_id": manifest["run_id"],
                "status": manifest.get("status"),
                "recipe": manifest["recipe"]["name"],
                "started_at": manifest.get("started_at"),
                "ended_at": manifest.get("ended_at"),
                "cases": cases,
                "not_ok": [{"case_id": cid, **entry} for cid, entry in _failed(manifest)],
            },
            indent=2,
        )
        + "\n"
    )


def to_csv(run_dir: Path) -> str:
    path = RunDir(run_dir).summary_csv
    return path.read_text() if path.is_file() else ""


def export(run_dir: Path, fmt: str) -> str:
    return {"csv": to_csv, "json": to_json, "md": to_markdown}[fmt](Path(run_dir))


def to_text(run_dir: Path) -> str:
    """For the terminal: the markdown table reads fine as plain text."""
    return to_markdown(run_dir)
