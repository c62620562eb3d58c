"""core/attempts.py on its own: the Trail's records, and `noted` passing a sub-flow through."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from opero.core.attempts import BACKOFF, RATE_LIMIT, Trail, noted
from opero.core.stats import Counters
from opero.core.steps import Step, Wait
from opero.testing import FakeClock


def test_a_trail_closes_each_record_when_the_next_attempt_begins(clock: FakeClock) -> None:
    trail = Trail()
    trail.ended(1, None, None, OSError("first"))  # the shell's untimed first attempt
    trail.waiting(0.5, BACKOFF)
    trail.waiting(2.0, RATE_LIMIT)  # the longer part names the reason
    clock.advance(2.5)
    trail.began()
    began = clock.now()
    clock.advance(0.25)
    trail.ended(2, None, began, OSError("second"))

    first, second = trail.close()

    assert (first.wait, first.wait_reason, first.start) == (2.5, RATE_LIMIT, None)
    assert second.duration == pytest.approx(0.25)
    assert second.start == pytest.approx(clock.wall() - 0.25)
    assert (second.wait, second.wait_reason) == (None, None)
    assert trail.close() == (first, second)  # closing again adds nothing


def test_a_wait_without_an_open_record_is_not_kept(clock: FakeClock) -> None:
    trail = Trail()
    trail.waiting(1.0, RATE_LIMIT)  # the first attempt's own slot: no record before it
    assert trail.close() == ()


def picking(log: list[Any]) -> Generator[Step, Any, str]:
    """A sub-flow that waits twice and returns; it notes what is thrown into it."""
    counters = Counters()
    try:
        yield Wait(1.5, counters)
        yield Wait(0.5, counters)
    except KeyboardInterrupt as exc:
        log.append(exc)
        raise
    return "picked"


def test_noted_passes_the_steps_and_the_value_through() -> None:
    seen: list[float] = []
    flow = noted(picking([]), seen.append)
    steps = [next(flow), flow.send(None)]
    with pytest.raises(StopIteration) as stop:
        flow.send(None)
    assert stop.value.value == "picked"
    assert [step.seconds for step in steps] == [1.5, 0.5]
    assert seen == [1.5, 0.5]


def test_noted_throws_a_cut_wait_into_the_sub_flow() -> None:
    log: list[Any] = []
    flow = noted(picking(log), lambda seconds: None)
    next(flow)
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        flow.throw(interrupt)
    assert log == [interrupt]  # the pick saw it where it waited (and gave its permit back)
