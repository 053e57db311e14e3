"""melt.deadline: one budget per case; each step's wait is what is left of it, at most the step's cap, and a
step that starts with nothing left fails naming itself."""

from __future__ import annotations

import time

import pytest

from melt.deadline import CLEANUP_S, Deadline, DeadlineExceeded, unbounded
from melt.errors import MeltError


def test_a_spent_budget_names_the_step():
    d = Deadline(0.05)
    time.sleep(0.06)
    assert d.expired() and d.remaining() == 0.0
    with pytest.raises(DeadlineExceeded) as raised:
        d.for_step("push of the model", cap_s=600)
    e = raised.value
    assert isinstance(e, MeltError) and e.step == "push of the model" and e.budget_s == 0.05
    assert str(e) == "timed out after 0.05 s (protocol.timeout_s) during push of the model"
    assert d.exceeded("pull of the results").step == "pull of the results"


def test_a_zero_budget_is_spent_at_once():
    with pytest.raises(DeadlineExceeded, match="during the agent"):
        Deadline(0).for_step("the agent")


@pytest.mark.parametrize("budget_s", [0.3, 5.0, 3600.0])
@pytest.mark.parametrize("cap_s", [None, 0.0001, 0.1, 2.0, 10_000.0])
def test_a_step_never_gets_more_than_is_left_or_its_cap(budget_s, cap_s):
    d = Deadline(budget_s)
    for _ in range(3):
        before = d.remaining()
        got = d.for_step("a step", cap_s)
        after = d.remaining()
        assert 0 < got <= before
        assert got >= min(after, cap_s if cap_s is not None else after)
        if cap_s is not None:
            assert got <= cap_s
        time.sleep(0.01)


def test_remaining_shrinks_with_the_clock_and_never_goes_below_zero():
    d = Deadline(0.2)
    first = d.remaining()
    assert 0 < first <= 0.2 and not d.expired()
    time.sleep(0.05)
    second = d.remaining()
    assert second < first and d.elapsed() >= 0.05
    assert d.at == pytest.approx(d.started + 0.2)
    time.sleep(0.2)
    assert d.remaining() == 0.0 and d.expired() and d.elapsed() > 0.2


def test_the_budget_runs_from_creation_not_from_each_step():
    """Steps share one budget: the waits of a 0.3 s case together take no more than 0.3 s, so at most three
    steps capped at 0.12 s get one, and the step that fails is the first to start with nothing left (which
    one that is depends on how long this machine's sleeps overrun: not asked)."""
    d = Deadline(0.3)
    steps = ("push", "agent", "pull", "clean-up", "again")
    waits = []
    with pytest.raises(DeadlineExceeded) as raised:
        for step in steps:
            wait = d.for_step(step, cap_s=0.12)
            waits.append(wait)
            time.sleep(wait)
    assert sum(waits) <= 0.3 + 1e-6 and all(0 < w <= 0.12 for w in waits)
    assert 1 <= len(waits) <= 3
    assert raised.value.step == steps[len(waits)] and d.expired()


def test_unbounded_is_a_day_and_cleanup_has_its_own_seconds():
    assert unbounded().budget_s == 86400.0 and unbounded().for_step("probe", 30) == 30
    assert 0 < CLEANUP_S <= 30
