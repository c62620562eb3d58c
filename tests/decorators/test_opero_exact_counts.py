"""Statistics stay exact whatever happens: cancellation mid-wait, interrupts, shared errors.

Invariants checked throughout: ``attempts`` is the number of times the function
really ran, ``retries`` and ``waited`` count only waits that happened, and
``cache_hits + cache_misses <= calls``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable

import pytest

from opero import AllFailedError, opero
from opero.core import clock as opero_clock
from opero.testing import FakeClock, use_clock

PATIENCE = 5.0


class InterruptingClock:
    """Virtual time whose blocking sleep is interrupted (Ctrl-C) after ``after`` seconds.

    A real Ctrl-C in the middle of ``time.sleep`` cannot be aimed at one sleep
    of a test reliably; this is the same outcome for the code under test.
    """

    def __init__(self, after: float) -> None:
        self.time = 0.0
        self.after = after

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        if seconds > self.after:
            self.time += self.after
            raise KeyboardInterrupt
        self.time += seconds

    def async_sleep(self, seconds: float) -> Awaitable[None]:
        raise NotImplementedError


def test_a_task_cancelled_during_backoff_has_not_retried(clock: FakeClock) -> None:
    runs: list[int] = []

    @opero(retries=1, min_delay=5.0)
    async def fetch() -> None:
        runs.append(1)
        raise ConnectionError("down")

    async def main() -> None:
        task = asyncio.create_task(fetch())
        await opero_clock.async_sleep(0.2)  # the backoff of 5 s is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = fetch.statistics()
    assert runs == [1]
    assert (stats.calls, stats.attempts, stats.retries, stats.failures) == (1, 1, 0, 0)
    assert stats.waited == pytest.approx(0.2)


def test_a_sync_call_interrupted_during_backoff_has_not_retried() -> None:
    runs: list[int] = []

    @opero(retries=2, min_delay=5.0)
    def fetch() -> None:
        runs.append(1)
        raise ConnectionError("down")

    with use_clock(InterruptingClock(after=0.2)), pytest.raises(KeyboardInterrupt):
        fetch()
    stats = fetch.statistics()
    assert runs == [1]
    assert (stats.calls, stats.attempts, stats.retries) == (1, 1, 0)
    assert stats.waited == pytest.approx(0.2)


def test_a_fallback_pause_cut_short_counts_no_fallback() -> None:
    used: list[str] = []

    @opero(retries=0, arg_fallback="key", fallback_delay=3.0)
    def fetch(key: list[str] = ["a", "b"]) -> str:  # noqa: B006 - the documented style
        used.append(key[0])
        raise ConnectionError("down")

    with use_clock(InterruptingClock(after=1.0)), pytest.raises(KeyboardInterrupt):
        fetch()
    stats = fetch.statistics()
    assert used == ["a"]
    assert (stats.attempts, stats.fallbacks, stats.waited) == (1, 0, 1.0)


def test_completed_waits_are_counted_in_full(clock: FakeClock) -> None:
    @opero(retries=2, min_delay=1.0, backoff_factor=2.0)
    async def fetch() -> None:
        raise ConnectionError("down")

    with pytest.raises(AllFailedError):
        asyncio.run(fetch())
    stats = fetch.statistics()
    assert (stats.calls, stats.attempts, stats.retries, stats.failures) == (1, 3, 2, 1)
    assert stats.waited == pytest.approx(3.0)


def test_a_task_cancelled_during_a_rate_limit_wait(clock: FakeClock) -> None:
    runs: list[int] = []

    @opero(cache=True, rate_limit=1.0)
    async def fetch(n: int) -> int:
        runs.append(n)
        return n

    async def main() -> None:
        assert await fetch(1) == 1  # takes the only slot of this second
        task = asyncio.create_task(fetch(2))  # must wait 1 s for its slot
        await opero_clock.async_sleep(0.25)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = fetch.statistics()
    assert runs == [1]
    assert stats.cache_hits + stats.cache_misses <= stats.calls
    assert (stats.calls, stats.cache_misses, stats.attempts) == (2, 2, 1)
    assert stats.waited == pytest.approx(0.25)


def test_a_thread_interrupted_during_a_rate_limit_wait() -> None:
    @opero(cache=True, rate_limit=0.5)
    def fetch(n: int) -> int:
        return n

    with use_clock(InterruptingClock(after=0.5)):
        assert fetch(1) == 1
        with pytest.raises(KeyboardInterrupt):
            fetch(2)
    stats = fetch.statistics()
    assert (stats.calls, stats.cache_misses, stats.attempts, stats.waited) == (2, 2, 1, 0.5)


def wait_for_waiters(flights: object, key: object, count: int) -> None:
    """Until ``count`` threads wait on the flight of ``key`` (its Event's condition)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        flight = flights.table.current(key)  # type: ignore[attr-defined]
        if flight is not None and len(flight.done._cond._waiters) >= count:
            return
        time.sleep(0.001)
    raise AssertionError("the waiters never waited")


def test_waiters_given_the_leaders_error_are_counted() -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    @opero(cache=True, retries=0)
    def fetch(n: int) -> int:
        runs.append(n)
        started.set()
        release.wait(PATIENCE)
        raise LookupError("no such item")  # not retried: retries=0 and gives up

    errors: list[BaseException] = []

    def call() -> None:
        try:
            fetch(7)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    threads[0].start()
    assert started.wait(PATIENCE)
    for thread in threads[1:]:
        thread.start()
    wait_for_waiters(fetch.__opero__.flights, (7,), 3)
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    stats = fetch.statistics()
    assert runs == [7]
    assert len(errors) == 4
    assert (stats.calls, stats.attempts, stats.failures) == (4, 1, 4)
    assert stats.cache_hits + stats.cache_misses <= stats.calls


def test_cancelled_waiters_are_counted_and_the_leader_still_finishes() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        @opero(cache=True)
        async def fetch(n: int) -> int:
            await gate.wait()
            return n

        leader = asyncio.create_task(fetch(3))
        waiters = [asyncio.create_task(fetch(3)) for _ in range(3)]
        await asyncio.sleep(0.01)
        for waiter in waiters:
            waiter.cancel()
        gate.set()
        assert await leader == 3
        for waiter in waiters:
            with pytest.raises(asyncio.CancelledError):
                await waiter
        stats = fetch.statistics()
        assert (stats.calls, stats.attempts, stats.cache_misses, stats.cache_hits) == (4, 1, 1, 0)

    asyncio.run(main())
