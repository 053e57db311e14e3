"""One deadline per case: every wait and retry on its way (provisioning, the agent, the pull, clean-up)
takes its time from the same budget, as labgrid's Timeout does, so a case never runs past
`protocol.timeout_s` because each step had a fixed budget of its own."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from melt.errors import MeltError

# What clean-up (killing the case's process tree on the device, confirming it is gone) may take beyond
# the deadline: it must run even when the deadline is what ended the case.
CLEANUP_S = 10.0


class DeadlineExceeded(MeltError):
    """The case's time ran out during `step` (a name such as "push of the model" or "pull of the results")."""

    def __init__(self, step: str, budget_s: float):
        self.step = step
        self.budget_s = budget_s
        super().__init__(f"timed out after {budget_s:g} s (protocol.timeout_s) during {step}")


@dataclass
class Deadline:
    """`budget_s` seconds from creation on the monotonic clock.

    remaining() -> seconds left (never below 0); for(step, cap_s) -> seconds a step may wait (the
    smaller of what is left and its cap), raising DeadlineExceeded(step) when nothing is left.
    """

    budget_s: float
    started: float = field(default_factory=time.monotonic)

    @property
    def at(self) -> float:
        return self.started + self.budget_s

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def for_step(self, step: str, cap_s: float | None = None) -> float:
        """Seconds `step` may take: what is left of the budget, at most cap_s. Raises DeadlineExceeded(step)
        when the budget is spent before the step starts."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(step, self.budget_s)
        return min(left, cap_s) if cap_s is not None else left

    def exceeded(self, step: str) -> DeadlineExceeded:
        return DeadlineExceeded(step, self.budget_s)


def unbounded() -> Deadline:
    """A deadline for work outside any case (probing a device): a day."""
    return Deadline(86400.0)
