"""How a case's process on a device ended, as every session reports it, and bringing its folder back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from melt.deadline import CLEANUP_S, Deadline
from melt.devices.spawning import Ended
from melt.devices.transport import TransportError


@dataclass(frozen=True)
class AgentExit:
    """returncode (None: it did not end by itself), timed_out (the case's deadline ended it), log_tail, lost
    (why the link died first, else None), gone (its process tree is confirmed gone on the device; None: the
    device could not be asked), step (what was running: the agent, the llama.cpp tools)."""

    returncode: int | None
    timed_out: bool
    log_tail: str
    lost: str | None = None
    gone: bool | None = True
    step: str = "the agent"


def pull_case(transport, remote: str, case_dir: Path, ended: Ended, deadline: Deadline) -> bool:
    """Bring the case's device folder `remote` back into case_dir, after the spawned process `ended`. On `local`
    there is nothing to bring. Returns False when nothing came back from a case that did not end by itself
    (the device did not answer its clean-up, or the pull failed after a time-out or a lost link). Raises
    DeadlineExceeded or TransportError when the folder of a case that ended by itself cannot be pulled."""
    if transport.shares_files:
        return True
    if ended.lost and ended.gone is None:  # a device that did not answer the clean-up will not answer a pull
        return False
    try:  # after a time-out or a lost link too: what the case wrote so far
        transport.pull_dir(remote, case_dir, deadline.remaining() or CLEANUP_S)
    except TransportError:
        if ended.timed_out or ended.lost:
            return False
        if deadline.expired():
            raise deadline.exceeded("the pull of the results") from None
        raise
    return True
