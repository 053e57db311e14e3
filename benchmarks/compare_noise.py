"""How often does `melt compare` cry wolf, and does it catch a real slowdown?

Runs recipes/nightly.yaml on this machine SEED + N + 1 times. The first SEED runs are history, as
a nightly job has; then each run is compared with the one before (N A/A comparisons of identical
runs, `melt compare BASE NEW` with the catalog's history: any worse or better verdict is a false
positive; budget 0). The same pairs are also judged on trials alone (no history), to show what
run-to-run noise does to a trial-level test. Last, one run pinned to one CPU with `taskset` while
the recipe asks for two threads (a starved run) must be flagged worse.

As the nightly workflow does, a run that comparison flags is judged regressed (compare.json, so
it leaves the history) and its flagged cases are run again: a change counts as a false positive
of the pipeline only if the confirming run is flagged too.

    .venv/bin/python benchmarks/compare_noise.py [--pairs 20] [--seed-runs 3] [--results DIR] [--reuse]
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
from melt.results.layout import write_json  # noqa: E402

MELT = [str(Path(sys.executable).with_name("melt"))]


def run(
    results: Path, run_id: str, recipe: Path, reuse: bool, pin_cpu: str | None = None, cases: list[str] = ()
) -> Path:
    run_dir = results / run_id
    if reuse and (run_dir / "summary.csv").is_file():
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [*MELT, "run", str(recipe), "--results", str(results), "--run-id", run_id]
    cmd += [arg for case_id in cases for arg in ("--case", case_id)]
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
    ap.add_argument("--pairs", type=int, default=20, help="A/A comparisons")
    ap.add_argument("--seed-runs", type=int, default=3, help="runs made first, as history only")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "nightly.yaml")
    ap.add_argument("--results", type=Path, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs already in --results")
    ap.add_argument("--threshold", type=float, default=5.0)
    args = ap.parse_args()
    results = args.results or Path(tempfile.mkdtemp(prefix="melt-noise-"))
    print(f"runs in {results}")
    runs = [run(results, f"aa-{i:02d}", args.recipe, args.reuse) for i in range(args.seed_runs + args.pairs + 1)]
    starved = run(results, "starved", args.recipe, args.reuse, pin_cpu="0")
    pairs = list(zip(runs[args.seed_runs :], runs[args.seed_runs + 1 :]))

    for stale in results.glob("*/compare.json"):
        stale.unlink()  # judgements of an earlier benchmark run
    for label, use_history in (("trials only (no history)", False), ("with the catalog's run history", True)):
        flagged, confirmed, worst, bases = [], [], {}, set()
        for base, new in pairs:
            cmp = compare_runs(base, new, args.threshold, use_history=use_history)
            changes = [v for v in cmp.verdicts if v.verdict in ("worse", "better")]
            if use_history:  # what `melt compare` records, so the catalog leaves a regressed run out
                write_json(new / "compare.json", cmp.to_json())
            if changes:
                flagged.append((new.name, [(v.label, v.metric, v.verdict, round(v.change_pct, 1)) for v in changes]))
            if changes and use_history:
                again = run(results, f"{new.name}-confirm", args.recipe, args.reuse, cases=[v.case_id for v in changes])
                still = [
                    v for v in compare_runs(base, again, args.threshold).verdicts if v.verdict in ("worse", "better")
                ]
                seen = [(v.label, v.metric, v.verdict) for v in still]
                print(f"  {new.name} flagged; confirming run: {seen or 'clean'}")
                if still:
                    confirmed.append(new.name)
            bases |= {v.basis for v in cmp.verdicts if v.basis}
            for v in cmp.verdicts:
                if v.change_pct is not None and v.p_value is not None:
                    key = (v.label, v.metric)
                    worst[key] = max(worst.get(key, 0.0), abs(v.change_pct))
        print(f"\nA/A, {label}: {len(flagged)} of {len(pairs)} comparisons flagged a change "
              f"(rate {len(flagged) / len(pairs):.2f}); tests on {sorted(bases)}")  # fmt: skip
        for name, changes in flagged:
            print(f"  {name}: {changes}")
        if use_history:
            print(f"  confirmed by a second run: {len(confirmed)} of {len(pairs)} (false-positive rate "
                  f"{len(confirmed) / len(pairs):.2f}, budget 0)")  # fmt: skip
            history_flagged = confirmed  # the budget is on what the nightly pipeline reports
    print("largest |change| between consecutive identical runs:")
    for (label, metric), pct in sorted(worst.items()):
        print(f"  {label:<58} {metric:<16} {pct:5.1f}%")

    cmp = compare_runs(runs[-1], starved, args.threshold)
    print(f"\nstarved run (taskset -c 0, threads 2) vs {runs[-1].name}: regressed={cmp.regressed}")
    for v in cmp.verdicts:
        if v.change_pct is not None:
            p = "" if v.p_value is None else f"p={v.p_value:.2g} ({v.basis})"
            print(f"  {v.verdict:<16} {v.label:<58} {v.metric:<16} {v.change_pct:+6.1f}%  {p}")
    if history_flagged or not cmp.regressed:
        sys.exit(1)


if __name__ == "__main__":
    main()
