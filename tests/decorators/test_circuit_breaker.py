"""``circuit_breaker=`` on any function (issue 14, CONTRACT 36), on the fake clock.

It sits inside the rate limit and around the retries: a call whose retries are all
spent is one failure, and an open breaker costs no rate slot and no attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from opero import AllFailedError, Breaker, CircuitOpenError, opero
from opero.testing import FakeClock


def test_opens_after_failed_calls_and_costs_no_slot(clock: FakeClock) -> None:
    calls: list[float] = []
    down = {"on": True}

    @opero(
        retries=1,
        min_delay=0.1,
        rate_limit=1,
        circuit_breaker=Breaker(failure_threshold=2, failure_ratio=None, cooldown=60),
    )
    def fetch() -> str:
        calls.append(clock.now())
        if down["on"]:
            raise ConnectionError
        return "ok"

    for _ in range(2):  # each call: two attempts, one failure for the breaker
        with pytest.raises(AllFailedError):
            fetch()
    assert len(calls) == 4
    slept = list(clock.sleeps)
    with pytest.raises(CircuitOpenError) as caught:
        fetch()
    assert len(calls) == 4  # no attempt
    assert clock.sleeps == slept  # and no rate slot waited for
    assert caught.value.candidates == ()
    assert caught.value.retry_in is not None
    assert 0 < caught.value.retry_in <= 60
    assert fetch.statistics().failures >= 3
    down["on"] = False
    clock.advance(60)
    assert fetch() == "ok"  # the probe closes it
    assert fetch() == "ok"


def test_a_success_resets_the_run_of_failures(clock: FakeClock) -> None:
    outcomes = iter([True, False, True, False, True])

    @opero(retries=0, circuit_breaker=Breaker(failure_threshold=2, failure_ratio=None))
    def fetch() -> str:
        if next(outcomes):
            raise ConnectionError
        return "ok"

    for _ in range(5):  # fail, ok, fail, ok, fail: never two in a row
        with contextlib.suppress(AllFailedError):
            fetch()


def test_an_unwrapped_error_is_not_a_failure(clock: FakeClock) -> None:
    @opero(
        retries=0,
        retry_on=ConnectionError,
        circuit_breaker=Breaker(failure_threshold=1, failure_ratio=None),
    )
    def fetch() -> str:
        raise ValueError("a bug")

    for _ in range(3):
        with pytest.raises(ValueError, match="a bug"):
            fetch()  # never CircuitOpenError


def test_async_and_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, opero_logger: logging.Logger
) -> None:
    calls: list[int] = []

    @opero(retries=0, circuit_breaker=Breaker(failure_threshold=1, cooldown=5))
    async def fetch() -> str:
        calls.append(1)
        raise ConnectionError

    async def main() -> None:
        with pytest.raises(AllFailedError):
            await fetch()
        with pytest.raises(CircuitOpenError):
            await fetch()

    with caplog.at_level(logging.INFO, logger="opero"):
        asyncio.run(main())
    assert len(calls) == 1
    assert "circuit breaker closed -> open" in caplog.text
