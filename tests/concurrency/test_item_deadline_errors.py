"""``@opmap(timeout=)`` is each item's deadline (CONTRACT 30) with the same meaning as
``deadline=``: an item that keeps failing ends at its deadline with a ``DeadlineExceeded``
holding every error so far, instead of retrying until the map gives up on it.

Real time: retries with 0.15 s backoff against a 0.5 s timeout; no wait that would end past
the deadline is started, so each such item ends before 0.5 s with two or three errors.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from opero import DeadlineExceeded, opmap

pytestmark = pytest.mark.timeout(60)

SETTINGS = {"workers": 2, "retries": 20, "min_delay": 0.15, "backoff_factor": 1.0}


def always_down(x: int) -> int:
    if x == 1:
        raise ConnectionError("upstream down")
    return x


async def aalways_down(x: int) -> int:
    if x == 1:
        raise ConnectionError("upstream down")
    return x


def _check(results: list[object], took: float) -> None:
    assert results[0] == 0
    assert results[2] == 2
    late = results[1]
    assert isinstance(late, DeadlineExceeded), late
    assert isinstance(late, TimeoutError)
    # 0, 0.15, 0.30 (and 0.45) started; the wait to 0.60 would end past 0.5: never started.
    assert 2 <= len(late.errors) <= 4, late.errors
    assert all(isinstance(e, ConnectionError) for e in late.errors)
    assert took < 5  # it ended at its deadline, not after 20 retries (3 s of backoff)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_failing_item_ends_at_its_deadline_with_its_errors(mode: str) -> None:
    mapped = opmap(mode=mode, timeout=0.5, progress=False, **SETTINGS)(always_down)
    began = time.monotonic()
    results = mapped([0, 1, 2])
    _check(results, time.monotonic() - began)


@pytest.mark.parametrize("mode", ["async", "async_process"])
def test_an_async_failing_item_ends_at_its_deadline_with_its_errors(mode: str) -> None:
    mapped = opmap(mode=mode, timeout=0.5, progress=False, **SETTINGS)(aalways_down)
    began = time.monotonic()
    results = asyncio.run(mapped([0, 1, 2]))
    _check(results, time.monotonic() - began)


def slow_down(x: int) -> int:
    if x == 1:
        time.sleep(0.3)  # the second attempt runs across the deadline
        raise ConnectionError("upstream down")
    return x


@pytest.mark.parametrize("mode", ["thread", "process", "async_process"])
def test_an_attempt_across_the_deadline_still_ends_with_the_items_errors(mode: str) -> None:
    """The item's engine cuts its attempt at the deadline; the map's own cut (which has no
    errors to give) waits a grace for it instead of racing it to the same instant."""
    settings = {**SETTINGS, "min_delay": 0.05}
    if mode == "async_process":

        async def run() -> list[object]:
            mapped = opmap(mode=mode, timeout=0.5, progress=False, **settings)(aslow_down)
            return await mapped([0, 1, 2])  # type: ignore[no-any-return]

        results = asyncio.run(run())
    else:
        results = opmap(mode=mode, timeout=0.5, progress=False, **settings)(slow_down)([0, 1, 2])
    assert results[0] == 0
    assert results[2] == 2
    late = results[1]
    assert isinstance(late, DeadlineExceeded), late
    assert late.errors, "the map's cut replaced the item's own DeadlineExceeded"
    assert isinstance(late.errors[0], ConnectionError)


async def aslow_down(x: int) -> int:
    if x == 1:
        await asyncio.sleep(0.3)
        raise ConnectionError("upstream down")
    return x
