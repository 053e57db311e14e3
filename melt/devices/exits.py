"""How a case's process on a device ended, as every session reports it."""

from __future__ import annotations

from dataclasses import dataclass


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
