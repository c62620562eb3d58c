"""Pausing a rate-limit scope (a server's Retry-After): no start before the pause ends.

In memory, on the fake clock: the GCRA ``Limiter``, one limiter per argument set and
a shared group.
The redis limiter's pause is in ``test_scope_pause_redis.py``.
"""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opero.core.limiters import limiter_for_scope
from opero.core.rate_limit import Limiter, PerArgsLimiter, RateLimit
from opero.testing import FakeClock


def by_first_argument(args: tuple[object, ...], kwargs: dict[str, object]) -> object:
    return args[0]


def starts(
    limiter: RateLimit, now: float, count: int, args: tuple[object, ...] = ()
) -> list[float]:
    return [now + limiter.reserve_for(args, {}, now) for _ in range(count)]


@pytest.mark.parametrize("burst", [1, 5])
def test_no_start_before_the_pause_ends_then_one_per_interval(burst: int) -> None:
    limiter = Limiter(rate=10, burst=burst)
    limiter.pause_for(7, now=100.0)
    assert starts(limiter, 100.0, 4) == pytest.approx([107.0, 107.1, 107.2, 107.3])
    # Reservations made later, but still inside the pause, queue behind it as well.
    assert starts(limiter, 103.0, 1) == pytest.approx([107.4])


def test_a_pause_keeps_the_slots_already_booked_after_it() -> None:
    limiter = Limiter(rate=1)
    booked = starts(limiter, 0.0, 10)  # 0, 1, ... 9
    limiter.pause_for(3, now=0.0)  # ends before the booked slots do
    assert booked[-1] == 9.0
    assert starts(limiter, 0.0, 1) == [10.0]


def test_a_shorter_pause_never_shortens_a_longer_one() -> None:
    limiter = Limiter(rate=10)
    limiter.pause_for(7, now=0.0)
    limiter.pause_for(2, now=1.0)
    assert starts(limiter, 1.0, 1) == pytest.approx([7.0])


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf])
def test_an_empty_or_impossible_pause_is_ignored(seconds: float) -> None:
    for limiter in (Limiter(rate=10), PerArgsLimiter(10, 1, by_first_argument)):
        limiter.pause_for(seconds, now=0.0)
        assert limiter.reserve_for(("a",), {}, 0.0) == 0.0


def test_the_limiter_is_idle_only_once_the_pause_has_passed() -> None:
    limiter = Limiter(rate=10)
    limiter.pause_for(7, now=0.0)
    assert not limiter.idle(6.9)
    assert limiter.idle(7.0)


@given(
    events=st.lists(
        st.tuples(
            st.floats(0, 5),  # time passing before the event
            st.one_of(st.none(), st.floats(0.001, 30)),  # None: a reservation; else a pause
        ),
        max_size=60,
    ),
    rate=st.sampled_from([0.5, 3.0, 50.0]),
    burst=st.integers(1, 4),
)
@settings(max_examples=200, deadline=None)
def test_no_reservation_ever_starts_inside_a_pause(
    events: list[tuple[float, float | None]], rate: float, burst: int
) -> None:
    limiter, now, paused_until = Limiter(rate, burst), 0.0, -math.inf
    for passing, pause in events:
        now += passing
        if pause is None:
            assert now + limiter.reserve(now) >= paused_until - 1e-9
        else:
            limiter.pause_for(pause, now)
            paused_until = max(paused_until, now + pause)


def test_per_args_pauses_every_argument_set_even_ones_not_seen_yet() -> None:
    limiter = PerArgsLimiter(10, 1, by_first_argument)
    assert starts(limiter, 0.0, 1, ("seen",)) == [0.0]
    limiter.pause_for(7, now=1.0)
    assert starts(limiter, 1.0, 2, ("seen",)) == pytest.approx([8.0, 8.1])
    assert starts(limiter, 2.0, 2, ("new",)) == pytest.approx([8.0, 8.1])
    # Once the pause has passed, a new argument set starts at once.
    assert starts(limiter, 9.0, 1, ("later",)) == [9.0]


@pytest.mark.asyncio
async def test_the_async_pauses_are_the_same_pause() -> None:
    for each in (Limiter(10), PerArgsLimiter(10, 1, by_first_argument)):
        await each.apause_for(7, now=0.0)
        assert await each.areserve_for(("a",), {}, 0.0) == pytest.approx(7.0)


def test_a_shared_group_is_paused_for_every_function_in_it() -> None:
    group = f"pause-group-{id(object())}"
    first = limiter_for_scope(group, 10, 1, by_first_argument, function="first")
    second = limiter_for_scope(group, 10, 1, by_first_argument, function="second")
    first.pause_for(7, now=0.0)
    assert starts(second, 0.0, 1) == pytest.approx([7.0])
    # A function with a scope of its own is not paused by the group.
    alone = limiter_for_scope("per_function", 10, 1, by_first_argument, function="third")
    assert starts(alone, 0.0, 1) == [0.0]


@pytest.mark.asyncio
async def test_fifty_concurrent_async_callers_make_no_call_before_the_pause_ends(
    clock: FakeClock,
) -> None:
    limiter, begun = Limiter(rate=100, burst=10), clock.now()
    calls: list[float] = []

    async def caller() -> None:
        await clock.async_sleep(limiter.reserve(clock.now()))
        calls.append(clock.now())

    limiter.pause_for(7, clock.now())
    await asyncio.gather(*(caller() for _ in range(50)))
    assert len(calls) == 50
    assert min(calls) - begun == pytest.approx(7.0)
    assert all(call - begun >= 7.0 for call in calls)


def test_fifty_concurrent_threads_make_no_call_before_the_pause_ends(clock: FakeClock) -> None:
    limiter, begun = PerArgsLimiter(100, 10, by_first_argument), clock.now()
    waits: list[float] = []
    limiter.pause_for(7, clock.now())

    def caller(index: int) -> None:
        waits.append(limiter.reserve_for((index % 5,), {}, begun))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waits) == 50
    assert min(waits) == pytest.approx(7.0)
