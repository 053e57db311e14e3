"""How often does `melt compare` cry wolf, and does it catch a real slowdown?

Runs recipes/nightly.yaml on this machine SEED + N + 1 times, back to back, then once more pinned
to one CPU with `taskset` while the recipe asks for two threads (a starved run).

- A/A without history (the headline): each run compared with the one before, as `melt compare
  BASE NEW` does in a results folder that holds nothing else: the run-to-run noise is the assumed
  one (--run-noise-pct) plus the drift within each run. No confirming rerun. Any worse or better
  verdict is a false positive; budget 0 of N.
- A/A with the catalog's history (for comparison): the same pairs with every earlier run as
  history (the first SEED runs are there only for that); a flagged run is judged regressed
  (compare.json), so it leaves the history, as in the nightly job.
- The starved run against the last A/A run, without history and with: must be flagged worse.
- The run-to-run noise measured: for every judged case and metric, the sd of the log run medians
  over all the A/A runs. The largest is what DEFAULT_RUN_NOISE_PCT (melt/analysis/compare.py)
  should cover.

    .venv/bin/python benchmarks/compare_noise.py [--pairs 20] [--seed-runs 3] [--results DIR] [--reuse]
    .venv/bin/python benchmarks/compare_noise.py --pairs 3 --seed-runs 0     # a smoke run, ~5 runs

Exit 1 when an A/A pair without history is flagged, or the starved run is not.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from record import add_out_arg, kept_output  # noqa: E402

from melt.analysis.compare import DEFAULT_RUN_NOISE_PCT, compare_runs, load_run  # noqa: E402
from melt.analysis.samples import INFORMATION_ONLY, RUN_LEVEL  # noqa: E402
from melt.analysis.significance import log_spread  # noqa: E402
from melt.results.layout import write_json  # noqa: E402

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


def measured_noise(runs: list[Path]) -> dict[tuple[str, str], float]:
    """(case label, metric) -> sd of the log run medians over `runs`, in %: the run-to-run noise."""
    medians: dict[tuple[str, str], list[float]] = {}
    for run_dir in runs:
        for case in load_run(run_dir).values():
            for metric, values in case.samples.items():
                if metric not in RUN_LEVEL and metric not in INFORMATION_ONLY:
                    medians.setdefault((case.label, metric), []).append(statistics.median(values))
    spread = {key: log_spread(ms) for key, ms in medians.items()}
    return {key: s * 100 for key, s in spread.items() if s is not None}


def aa_study(pairs: list[tuple[Path, Path]], label: str, threshold: float, noise_pct: float, history: bool) -> int:
    """Compare each pair; print what was flagged; return how many pairs were."""
    flagged, bases = [], set()
    for base, new in pairs:
        cmp = compare_runs(base, new, threshold, use_history=history, run_noise_pct=noise_pct)
        if history:  # what `melt compare` records, so the catalog leaves a regressed run out
            write_json(new / "compare.json", cmp.to_json())
        changes = [v for v in cmp.verdicts if v.verdict in ("worse", "better")]
        if changes:
            flagged.append((new.name, [(v.label, v.metric, v.verdict, round(v.change_pct, 1)) for v in changes]))
        bases |= {v.basis for v in cmp.verdicts if v.basis}
    print(f"\nA/A, {label}: {len(flagged)} of {len(pairs)} comparisons flagged a change "
          f"(rate {len(flagged) / len(pairs):.2f}); run-to-run noise from {sorted(bases)}")  # fmt: skip
    for name, changes in flagged:
        print(f"  {name}: {changes}")
    return len(flagged)


def starved_verdict(last: Path, starved: Path, threshold: float, noise_pct: float, history: bool) -> bool:
    cmp = compare_runs(last, starved, threshold, use_history=history, run_noise_pct=noise_pct)
    label = "with history" if history else "without history"
    print(f"\nstarved run (taskset -c 0, threads 2) vs {last.name}, {label}: regressed={cmp.regressed}")
    for v in cmp.verdicts:
        if v.change_pct is not None and v.p_value is not None:
            print(f"  {v.verdict:<16} {v.label[:50]:<50} {v.metric:<15} {v.change_pct:+6.1f}%  "
                  f"p={v.p_value:.2g} ({v.basis}, run noise {v.run_noise_pct:.3g}%)")  # fmt: skip
    return cmp.regressed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20, help="A/A comparisons")
    ap.add_argument("--seed-runs", type=int, default=3, help="runs made first, as history only")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "nightly.yaml")
    ap.add_argument("--results", type=Path, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs already in --results")
    ap.add_argument("--threshold", type=float, default=5.0)
    ap.add_argument("--run-noise-pct", type=float, default=DEFAULT_RUN_NOISE_PCT, help="as `melt compare`'s")
    add_out_arg(ap)
    args = ap.parse_args()
    with kept_output("compare_noise", args.out):
        code = study(args)
    sys.exit(code)


def study(args) -> int:
    results = args.results or Path(tempfile.mkdtemp(prefix="melt-noise-"))
    print(f"runs in {results}")
    runs = [run(results, f"aa-{i:02d}", args.recipe, args.reuse) for i in range(args.seed_runs + args.pairs + 1)]
    starved = run(results, "starved", args.recipe, args.reuse, pin_cpu="0")
    pairs = list(zip(runs[args.seed_runs :], runs[args.seed_runs + 1 :]))
    for stale in results.glob("*/compare.json"):
        stale.unlink()  # judgements of an earlier benchmark run

    noise = args.run_noise_pct
    without = aa_study(pairs, f"without history (assumed run-to-run noise {noise:g}%)", args.threshold, noise, False)
    aa_study(pairs, "with the catalog's run history", args.threshold, noise, True)

    spread = measured_noise(runs)
    print(f"\nrun-to-run noise over {len(runs)} identical runs (sd of log run medians; compare assumes {noise:g}%):")
    for (label, metric), pct in sorted(spread.items()):
        print(f"  {label[:58]:<58} {metric:<16} {pct:5.1f}%")
    if spread:
        (label, metric), top = max(spread.items(), key=lambda kv: kv[1])
        print(f"  largest: {top:.1f}% ({label}, {metric})")

    caught = starved_verdict(runs[-1], starved, args.threshold, noise, False)
    starved_verdict(runs[-1], starved, args.threshold, noise, True)
    print(f"\nverdict: A/A without history flagged {without} of {len(pairs)} (budget 0); "
          f"starved run flagged without history: {caught}")  # fmt: skip
    return 1 if without or not caught else 0


if __name__ == "__main__":
    main()
