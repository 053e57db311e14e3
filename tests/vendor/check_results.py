#!/usr/bin/env python3
# Vendored from ../shared/tools/check_results.py (the project's shared tools; see ../shared/README.md), so
# a clone without ../shared runs the tests. Unchanged below this note; copy it again when that file changes.
# fmt: off
"""Check a melt run folder against the results contract in ../DESIGN.md.

usage: python3 ../shared/tools/check_results.py results/<run_id>

Standard library only. Prints one line per problem and exits 1 if there is any; prints a one-line
summary and exits 0 otherwise. It checks the shape of what is on disk, not whether the numbers are
right.
"""
import csv
import json
import math
import sys
from pathlib import Path

ID_COLUMNS = ["case_id", "device", "model", "runtime"]
METRIC_COLUMNS = [
    "load_s", "ttft_s", "prefill_tok_s", "decode_tok_s", "itl_p50_ms", "itl_p90_ms", "itl_p99_ms", "e2e_s",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "throughput_ips", "peak_rss_mb",
    "power_avg_w", "energy_j", "energy_prefill_j", "energy_decode_j", "j_per_token", "power_method",
    "temp_max_c", "throttled", "n_trials", "cv_pct", "validity",
]
FILLED = {  # columns that must hold a positive number for every successful case of that runtime
    "llama_cpp": ["load_s", "ttft_s", "prefill_tok_s", "decode_tok_s", "itl_p50_ms", "e2e_s", "peak_rss_mb"],
    "onnxruntime": ["latency_p50_ms", "latency_p99_ms", "throughput_ips", "peak_rss_mb"],
}


def main(run_dir: Path) -> list[str]:
    problems = []
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        return [f"{run_json}: missing"]
    run = json.loads(run_json.read_text())
    if "schema_version" not in run:
        problems.append("run.json: no schema_version")
    summary = run_dir / "summary.csv"
    if not summary.is_file():
        return problems + [f"{summary}: missing"]
    with summary.open(newline="") as f:
        rows = list(csv.DictReader(f))
        columns = rows[0].keys() if rows else []
    for c in ID_COLUMNS + METRIC_COLUMNS:
        if c not in columns:
            problems.append(f"summary.csv: no column {c}")
    for row in rows:
        case = run_dir / "cases" / row.get("case_id", "?")
        for name in ("case.json", "trials.jsonl", "metrics.json"):
            if not (case / name).is_file():
                problems.append(f"{case / name}: missing")
        for c in FILLED.get(row.get("runtime", ""), []):
            try:
                ok = float(row.get(c, "")) > 0 and math.isfinite(float(row[c]))
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"summary.csv case {row.get('case_id')}: {c} = {row.get(c)!r}, want a positive number")
    if not rows:
        problems.append("summary.csv: no cases")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    found = main(Path(sys.argv[1]))
    for p in found:
        print(p)
    if found:
        sys.exit(1)
    print(f"{sys.argv[1]}: matches the results contract")
