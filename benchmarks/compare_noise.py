"""How often does `melt compare` cry wolf, and does it catch a real slowdown?

Runs recipes/nightly.yaml on this machine N+1 times, compares each run with the next (N A/A
comparisons of identical runs: any worse or better verdict is a false positive; budget 0), then
runs it once more pinned to one CPU with `taskset` while the recipe asks for two threads (a
starved run), which must be flagged worse against a normal run.

    .venv/bin/python benchmarks/compare_noise.py [--pairs 20] [--results DIR] [--reuse]

Prints the false-positive rate, the largest A/A change per metric, and the starved run's verdicts.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from melt.analysis.compare import compare_runs  # noqa: E402

MELT = [str(Path(sys.executable).with_name("melt"))]


def run(results: Path, run_id: str, recipe: Path, reuse: bool, pin_cpu: str | None = None) -> Path:
    run_dir = results / run_id
    if reuse and (run_dir / "summary.csv").is_file():
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [*MELT, "run", str(recipe), "--results", str(results), "--run-id", run_id]
    if pin_cpu is not None:
        cmd = ["taskset", "-c", pin_cpu, *cmd]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{run_id} failed:\n{proc.stdout}\n{proc.stderr}")
    print(f"  {run_id}: {time.monotonic() - started:.0f} s", flush=True)
    return run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20, help="A/A comparisons (runs: pairs + 1)")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "nightly.yaml")
    ap.add_argument("--results", type=Path, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs already in --results")
    ap.add_argument("--threshold", type=float, default=5.0)
    args = ap.parse_args()
    results = args.results or Path(tempfile.mkdtemp(prefix="melt-noise-"))
    print(f"runs in {results}")
    runs = [run(results, f"aa-{i:02d}", args.recipe, args.reuse) for i in range(args.pairs + 1)]
    starved = run(results, "starved", args.recipe, args.reuse, pin_cpu="0")

    flagged, worst = [], {}
    for base, new in zip(runs, runs[1:]):
        cmp = compare_runs(base, new, args.threshold)
        changes = [v for v in cmp.verdicts if v.verdict in ("worse", "better")]
        if changes:
            flagged.append((new.name, [(v.label, v.metric, v.verdict, round(v.change_pct, 1)) for v in changes]))
        for v in cmp.verdicts:
            if v.change_pct is not None and v.p_value is not None:
                key = (v.label, v.metric)
                worst[key] = max(worst.get(key, 0.0), abs(v.change_pct))
    tests = sum(v.p_value is not None for v in compare_runs(runs[0], runs[1], args.threshold).verdicts)
    print(f"\nA/A: {len(flagged)} of {args.pairs} comparisons flagged a change "
          f"(false-positive rate {len(flagged) / args.pairs:.2f}, budget 0); {tests} tests per comparison")  # fmt: skip
    for name, changes in flagged:
        print(f"  {name}: {changes}")
    print("largest |change| between consecutive identical runs:")
    for (label, metric), pct in sorted(worst.items()):
        print(f"  {label:<40} {metric:<16} {pct:5.1f}%")

    cmp = compare_runs(runs[-1], starved, args.threshold)
    print(f"\nstarved run (taskset -c 0, threads 2) vs {runs[-1].name}: regressed={cmp.regressed}")
    for v in cmp.verdicts:
        if v.change_pct is not None:
            print(f"  {v.verdict:<16} {v.label:<40} {v.metric:<16} {v.change_pct:+6.1f}%  p={v.p_value}")
    if flagged or not cmp.regressed:
        sys.exit(1)


if __name__ == "__main__":
    main()
