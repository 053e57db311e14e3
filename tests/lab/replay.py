"""Advances a copy of a board tree (tests/lab/boards) along its timeline while a test runs.

`replaying(board, folder)` copies the committed tree (its t = 0 state) into folder, starts this file
as a process that rewrites the tree's changing files (make_boards.Board.dynamic) every TICK_S and at
every phase boundary, and kills it when the block ends. A timeline of make_boards.VARIANTS is replayed over
a copy of the tree it names (`tree`), its t = 0 state written over that copy first. With started=False the
timeline waits, at its t = 0 state, for Replay.start(): a test starts it at a moment it chose (the start of
the trials it measures), so the board's changes fall inside them however long what came before took.
Timeline time t is time.monotonic() - t0, the clock melt's sampler and agent stamp with, so a test can
set any trace sample or trial window against the board's exact state and power integral (Board.power_w,
Board.energy_j).

Each file is replaced atomically (a reader sees the old or the new text). A power step reaches the
files a little after its scheduled time: the process logs, per boundary, when it was due and when its
files were written (`boundary <due_t> <written_t>` in timeline seconds), each rewrite (`write <state_t>
<written_t>`) and, first, its t0 (`t0 <monotonic s>`), so a test can bound how late and how stale the files were
instead of assuming it. The process exits by itself when its parent (the test process) is gone.

Usage (what replaying() runs): python replay.py BOARD ROOT T0 LOG PARENT_PID
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICK_S = 0.02  # how often the counters, temperatures and tool outputs are rewritten between boundaries


class Replay:
    """A running replay: its tree `root`, its board model, its t0 on the monotonic clock, its log."""

    def __init__(self, board_name: str, root: Path, log: Path, started: bool = True):
        self.board = timeline(board_name)
        self.name, self.root, self.log = board_name, root, log
        self.t0: float | None = None
        self.proc: subprocess.Popen | None = None
        if started:
            self.start()

    def start(self) -> None:
        """Start the timeline now (t0 = now on the monotonic clock)."""
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), self.name, str(self.root), repr(self.t0), str(self.log),
             str(os.getpid())],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def t(self, monotonic_s: float) -> float:
        """Timeline seconds of a monotonic time (a trace's t_s, a trial's stamp in s)."""
        return monotonic_s - self.t0

    def boundary_lags(self) -> list[tuple[float, float]]:
        """(due, written) timeline seconds of each power step the process has made so far."""
        out = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            kind, *values = line.split()
            if kind == "boundary":
                out.append((float(values[0]), float(values[1])))
        return out

    def write_gap(self) -> float:
        """How stale a file can have been so far (s): the longest time from the state one rewrite wrote to the end
        of the next rewrite (until then a reader still sees the older state; on a loaded machine a rewrite itself
        can take longer than a tick)."""
        writes = [line.split()[1:3] for line in self.log.read_text().splitlines() if line.startswith("write ")]
        return max((float(b[1]) - float(a[0]) for a, b in zip(writes, writes[1:])), default=TICK_S)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def timeline(board_name: str):
    """The board model of a committed tree (make_boards.BOARDS) or of a timeline over one (VARIANTS)."""
    sys.path.insert(0, str(HERE))
    from make_boards import BOARDS, VARIANTS

    return {**BOARDS, **VARIANTS}[board_name]


@contextmanager
def replaying(board_name: str, folder: Path, started: bool = True):
    """A copy of tests/lab/boards/<board_name> (a variant: of the tree it names) under folder, kept moving for the
    length of the block; with started=False from when the test calls Replay.start()."""
    sys.path.insert(0, str(HERE))
    from make_boards import write_file

    board = timeline(board_name)
    root = folder / board_name
    shutil.copytree(HERE / "boards" / getattr(board, "tree", board_name), root, symlinks=True)
    for rel, text in board.dynamic(0.0).items():  # a variant's t = 0 state (a committed tree's is already that)
        write_file(root, rel, text)
    replay = Replay(board_name, root, folder / f"{board_name}.replay.log", started)
    try:
        yield replay
    finally:
        replay.stop()


def main(board_name: str, root: str, t0: float, log: str, parent: int) -> None:
    sys.path.insert(0, str(HERE))
    from make_boards import write_file

    board, tree = timeline(board_name), Path(root)
    written: dict[str, str] = {}

    def write_state(t: float) -> None:
        for rel, text in board.dynamic(t).items():
            if written.get(rel) != text:  # only what changed: fewer writes, less CPU beside the measured run
                write_file(tree, rel, text)
                written[rel] = text

    with open(log, "a", buffering=1) as out:
        out.write(f"t0 {t0!r}\n")  # the timeline's start on the monotonic clock, for reading the log afterwards
        next_tick = 0.0
        boundary = None
        while os.getppid() == parent:  # the test process is gone: nothing of this may outlive it
            now = time.monotonic() - t0
            write_state(max(now, boundary + 1e-6) if boundary is not None else now)
            out.write(f"write {now:.6f} {time.monotonic() - t0:.6f}\n")
            if boundary is not None:
                out.write(f"boundary {boundary:.6f} {time.monotonic() - t0:.6f}\n")
            next_tick = max(next_tick + TICK_S, now)
            upcoming = board.boundaries(now + 1e-9, next_tick)
            boundary = upcoming[0] if upcoming else None
            wake = boundary if boundary is not None else next_tick
            delay = t0 + wake - time.monotonic()
            if delay > 0:
                time.sleep(delay)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
