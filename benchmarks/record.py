"""A benchmark's output, kept: everything a benchmark prints also goes to benchmarks/outputs/<name>-<UTC time>.txt,
headed by the command, the time, melt's commit and the machine it ran on, so that a figure quoted in the README
can name the file it came from (and a reader can see on what kind of machine it was measured).

Usage in a benchmark's main():

    add_out_arg(ap)
    args = ap.parse_args(argv)
    with kept_output("fidelity", args.out, argv):
        ...  # print() as usual

`--out DIR` keeps the output in DIR instead; `--out none` keeps nothing (the scripts' own tests use it).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "outputs"


def add_out_arg(ap) -> None:
    ap.add_argument(
        "--out",
        default=str(DEFAULT_DIR),
        help="folder that keeps this run's output as <name>-<UTC time>.txt ('none': keep nothing)",
    )


def _commit() -> str:
    """melt's git commit, with '+changes' when the work tree differs from it; 'unknown' outside a checkout."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + (" +changes" if dirty else "")) if rev else "unknown"


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def kept_output(name: str, out: str | None, argv: list[str] | None = None) -> Iterator[Path | None]:
    """Tee sys.stdout into <out>/<name>-<YYYYmmddTHHMMSSZ>.txt for the block; yields that path (None with
    out 'none' or None). The header: the command line, the UTC start time, melt's commit and
    benchmarks/paired.machine_line(). Raises OSError when the folder cannot be made."""
    if out in (None, "none"):
        yield None
        return
    from paired import machine_info, machine_line  # imported late: paired imports psutil

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = folder / f"{name}-{stamp}.txt"
    args = " ".join(sys.argv[1:] if argv is None else argv)
    with path.open("w", encoding="utf-8") as f:
        f.write(f"# benchmarks/{name}.py {args}\n# started {stamp}; melt commit {_commit()}\n")
        f.write(f"# {machine_line(machine_info())}\n")
        f.flush()
        saved = sys.stdout
        sys.stdout = _Tee(saved, f)
        try:
            yield path
        finally:
            sys.stdout = saved
    print(f"output kept in {path}", flush=True)
