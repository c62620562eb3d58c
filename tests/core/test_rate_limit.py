"""Rate limiting: the GCRA policy, its scopes, and spacing through @opero."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
import uuid
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opero import ConfigurationError, opero
from opero.core import limiters
from opero.core.limiters import limiter_for_scope
from opero.core.rate_limit import Limiter, PerArgsLimiter
from opero.testing import FakeClock


def by_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    """The key function a per-args limiter is given: the positional arguments."""
    return args


def group_name() -> str:
    """A group name no other test uses: the group registry is process-wide."""
    return f"group-{uuid.uuid4().hex}"


def spaced(count: int, interval: float, start: float = 0.0) -> list[float]:
    return [start + k * interval for k in range(count)]


@pytest.fixture
def fresh_global() -> Iterator[None]:
    """A fresh "global" group for the test, the previous one put back afterwards.

    The registry is process-wide and the first user fixes the group's rate, so
    without this the test could break, or be broken by, other tests using "global".
    """
    saved = limiters._groups.pop("global", None)
    yield
    limiters._groups.pop("global", None)
    if saved is not None:
        limiters._groups["global"] = saved


# --- Limiter.reserve ----------------------------------------------------------------------


def test_burst_one_spaces_reservations_at_the_same_time() -> None:
    limiter = Limiter(rate=4)
    delays = [limiter.reserve(now=0.0) for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_burst_three_lets_three_start_at_once_then_spaces() -> None:
    limiter = Limiter(rate=10, burst=3)
    delays = [limiter.reserve(now=0.0) for _ in range(6)]
    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])
    # Once idle, the whole burst is available again.
    assert [limiter.reserve(now=50.0) for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_idle_limiter_does_not_wait() -> None:
    limiter = Limiter(rate=10)
    for _ in range(5):
        limiter.reserve(now=0.0)
    assert limiter.reserve(now=100.0) == 0.0
    assert limiter.reserve(now=100.0) == pytest.approx(0.1)
    # A call arriving part-way through an interval waits only for the rest of it.
    assert limiter.reserve(now=100.14) == pytest.approx(0.06)


def test_rate_below_one_means_seconds_between_calls() -> None:
    limiter = Limiter(rate=0.5)
    assert limiter.interval == 2.0
    assert limiter.reserve(now=0.0) == 0.0
    assert limiter.reserve(now=0.0) == 2.0
    # The next free start is t=4; asking at t=1 waits 3 s.
    assert limiter.reserve(now=1.0) == 3.0


def test_reserve_is_thread_safe() -> None:
    limiter = Limiter(rate=10)
    interval = limiter.interval
    barrier = threading.Barrier(8)
    delays: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        mine = [limiter.reserve(now=0.0) for _ in range(50)]
        with lock:
            delays.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(delays) == 400
    slots = sorted(round(delay / interval) for delay in delays)
    assert slots == list(range(400))  # every slot handed out exactly once
    assert all(
        math.isclose(delay, round(delay / interval) * interval, abs_tol=1e-9) for delay in delays
    )


# --- limiter_for_scope --------------------------------------------------------------------


def test_per_function_scope_gives_a_limiter_per_call() -> None:
    first = limiter_for_scope("per_function", 10, 1, by_args)
    second = limiter_for_scope("per_function", 10, 1, by_args)
    assert first is not second
    assert first.reserve_for((), {}, 0.0) == 0.0
    assert second.reserve_for((), {}, 0.0) == 0.0  # not delayed by the first


@pytest.mark.usefixtures("fresh_global")
def test_global_scope_is_shared() -> None:
    first = limiter_for_scope("global", 10, 1, by_args)
    second = limiter_for_scope("global", 10, 1, by_args)
    assert first is second
    assert first.reserve_for((), {}, 0.0) == 0.0
    assert second.reserve_for((), {}, 0.0) == pytest.approx(0.1)


def test_named_group_is_shared_and_keeps_its_first_rate() -> None:
    name = group_name()
    first = limiter_for_scope(name, 10, 2, by_args)
    assert limiter_for_scope(name, 10.0, 2, by_args) is first  # 10 and 10.0 are one rate
    with pytest.raises(ConfigurationError, match="rate_limit"):
        limiter_for_scope(name, 20, 2, by_args)
    with pytest.raises(ConfigurationError, match="rate_limit_burst"):
        limiter_for_scope(name, 10, 1, by_args)
    assert limiter_for_scope(name, 10, 2, by_args) is first  # the failed attempts changed nothing


def test_named_group_rate_conflict_through_the_decorator() -> None:
    name = group_name()

    @opero(rate_limit=5, rate_limit_scope=name)
    def first() -> None:
        """First member of the group."""

    with pytest.raises(ConfigurationError, match=name):

        @opero(rate_limit=6, rate_limit_scope=name)
        def second() -> None:
            """Asks for another rate."""


@pytest.mark.parametrize("scope", ["per_thread", "per_argument", "per_", "", "   ", 123, None])
def test_bad_scope_is_a_configuration_error(scope: Any) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit_scope"):
        limiter_for_scope(scope, 10, 1, by_args)


@pytest.mark.parametrize("rate", [0, -1, 0.0, float("nan"), float("inf"), True, "10", None])
def test_bad_rate_is_a_configuration_error_naming_rate_limit(rate: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        limiter_for_scope("per_function", rate, 1, by_args)
    message = str(info.value)
    assert "rate_limit" in message
    assert "rate_limit_burst" not in message


@pytest.mark.parametrize("burst", [0, -1, True, 1.5, "2"])
def test_bad_burst_is_a_configuration_error_naming_rate_limit_burst(burst: Any) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit_burst"):
        limiter_for_scope("per_function", 10, burst, by_args)


@pytest.mark.parametrize("rate", [0, float("nan"), float("inf"), True])
def test_bad_rate_fails_at_decoration_time(rate: Any) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):

        @opero(rate_limit=rate)
        def target() -> None:
            """Never called."""


# --- per_args -----------------------------------------------------------------------------


def test_per_args_separates_argument_sets() -> None:
    limiter = limiter_for_scope("per_args", 10, 1, by_args)
    assert isinstance(limiter, PerArgsLimiter)
    assert limiter.reserve_for(("a",), {}, 0.0) == 0.0
    assert limiter.reserve_for(("b",), {}, 0.0) == 0.0  # another argument set: no wait
    assert limiter.reserve_for(("a",), {}, 0.0) == pytest.approx(0.1)  # same one: spaced
    assert limiter.reserve_for(([1, 2],), {}, 0.0) == 0.0  # unhashable arguments work
    assert limiter.reserve_for(([1, 2],), {}, 0.0) == pytest.approx(0.1)


def test_per_args_keeps_working_past_the_pruning_threshold() -> None:
    limiter = PerArgsLimiter(rate=10, burst=1, keys=by_args)
    for i in range(1100):  # more than 1024 argument sets, all busy: nothing can be pruned
        assert limiter.reserve_for((i,), {}, 0.0) == 0.0
    assert limiter.reserve_for((5,), {}, 0.0) == pytest.approx(0.1)


def test_per_args_table_stays_bounded_when_keys_go_idle() -> None:
    limiter = PerArgsLimiter(rate=10, burst=1, keys=by_args)
    assert limiter.reserve_for(("hot",), {}, 0.0) == 0.0
    for i in range(10_000):  # a new key every second: each earlier one is idle by then
        now = float(i)
        assert limiter.reserve_for((i,), {}, now) == 0.0
        assert limiter.reserve_for((i,), {}, now) == pytest.approx(0.1)
    assert len(limiter._limiters) <= 2 * 1024
    # a key that was pruned behaves like a fresh one
    assert limiter.reserve_for(("hot",), {}, 20_000.0) == 0.0


def test_per_args_through_the_decorator(clock: FakeClock) -> None:
    starts: list[tuple[str, float]] = []

    @opero(rate_limit=10, rate_limit_scope="per_args")
    def fetch(key: str) -> str:
        starts.append((key, clock.now() - 1000.0))
        return key

    for key in ["a", "b", "a", "b"]:
        fetch(key)
    assert [key for key, _ in starts] == ["a", "b", "a", "b"]
    assert [at for _, at in starts] == pytest.approx([0.0, 0.0, 0.1, 0.1])


# --- through @opero with a fake clock --------------------------------------------------


def test_twenty_calls_in_a_loop_are_spaced_evenly() -> None:
    with FakeClock() as clock:
        starts: list[float] = []

        @opero(rate_limit=10)
        def call(i: int) -> int:
            starts.append(clock.now())
            return i

        assert [call(i) for i in range(20)] == list(range(20))
    assert starts == pytest.approx(spaced(20, 0.1))
    assert starts[-1] - starts[0] == pytest.approx(1.9)
    assert call.statistics().waited == pytest.approx(1.9)  # 19 waits of 0.1 s


def test_twenty_concurrent_async_calls_are_spaced_evenly() -> None:
    with FakeClock() as clock:
        starts: list[float] = []

        @opero(rate_limit=10)
        async def call(i: int) -> int:
            starts.append(clock.now())
            return i

        async def main() -> list[int]:
            return list(await asyncio.gather(*(call(i) for i in range(20))))

        assert asyncio.run(main()) == list(range(20))
    assert starts == pytest.approx(spaced(20, 0.1))
    assert max(starts) - min(starts) == pytest.approx(1.9)


def test_cache_hits_take_no_rate_limit_token() -> None:
    with FakeClock() as clock:
        calls: list[int] = []

        @opero(cache=True, rate_limit=10)
        def square(x: int) -> int:
            calls.append(x)
            return x * x

        assert [square(3) for _ in range(5)] == [9] * 5
        assert clock.now() == 0.0  # hits did not wait
        assert square(4) == 16
        # Only one token was taken before, so the second miss waits one interval.
        assert clock.now() == pytest.approx(0.1)
    assert calls == [3, 4]
    assert clock.sleeps == pytest.approx([0.1])


def test_named_group_spaces_calls_across_functions() -> None:
    name = group_name()
    with FakeClock() as clock:
        starts: list[tuple[str, float]] = []

        @opero(rate_limit=10, rate_limit_scope=name)
        def first() -> None:
            starts.append(("first", clock.now()))

        @opero(rate_limit=10, rate_limit_scope=name)
        def second() -> None:
            starts.append(("second", clock.now()))

        for _ in range(3):
            first()
            second()
    assert [who for who, _ in starts] == ["first", "second"] * 3
    assert [at for _, at in starts] == pytest.approx(spaced(6, 0.1))


def test_per_function_limiters_do_not_delay_each_other() -> None:
    with FakeClock() as clock:

        @opero(rate_limit=10)
        def first() -> None:
            """Its own limiter."""

        @opero(rate_limit=10)
        def second() -> None:
            """Its own limiter too."""

        first()
        second()
        assert clock.now() == 0.0
        first()
        assert clock.now() == pytest.approx(0.1)


@pytest.mark.usefixtures("fresh_global")
def test_global_scope_through_the_decorator() -> None:
    with FakeClock() as clock:
        starts: list[float] = []

        @opero(rate_limit=10, rate_limit_scope="global")
        def first() -> None:
            starts.append(clock.now())

        @opero(rate_limit=10, rate_limit_scope="global")
        async def second() -> None:
            starts.append(clock.now())

        first()
        asyncio.run(second())
        first()
    assert starts == pytest.approx([0.0, 0.1, 0.2])


def test_burst_through_the_decorator() -> None:
    with FakeClock() as clock:
        starts: list[float] = []

        @opero(rate_limit=2, rate_limit_burst=3)
        def call() -> None:
            starts.append(clock.now())

        for _ in range(5):
            call()
    assert starts == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0])


# --- real time, threads and event loops -----------------------------------------------


def test_real_time_spacing_from_eight_threads() -> None:
    starts: list[float] = []

    @opero(rate_limit=100)
    def call(i: int) -> int:
        starts.append(time.monotonic())
        return i

    begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(20)))
    elapsed = time.monotonic() - begin

    assert results == list(range(20))
    assert 0.19 <= elapsed < 1.0
    # Slots are 0.01 s apart from the first reservation (at or after `begin`), and a sleep
    # never ends early, so the k-th start is at least k intervals after `begin`.  (Gaps
    # between consecutive starts are not checked: a thread woken late by a busy machine
    # shortens the gap to the next one, which made such a check fail under load.)
    ordered = sorted(starts)
    assert all(at - begin >= k * 0.01 - 1e-6 for k, at in enumerate(ordered))


def test_limiter_works_across_event_loops_and_from_sync_code_inside_them() -> None:
    with FakeClock() as clock:
        async_starts: list[float] = []
        sync_starts: list[float] = []

        @opero(rate_limit=10)
        async def fetch(i: int) -> int:
            async_starts.append(clock.now())
            return i

        @opero(rate_limit=10)
        def lookup(i: int) -> int:
            sync_starts.append(clock.now())
            return i

        async def main() -> list[int]:
            results = list(await asyncio.gather(fetch(0), fetch(1), fetch(2)))
            return [*results, lookup(len(sync_starts))]  # sync call inside a running loop

        assert asyncio.run(main()) == [0, 1, 2, 0]
        assert asyncio.run(main()) == [0, 1, 2, 1]
    assert async_starts == pytest.approx(spaced(6, 0.1))
    # Its own limiter: it starts right after each gather, at 0.2 and then at 0.5.
    assert sync_starts == pytest.approx([0.2, 0.5])


def test_real_async_limiter_on_two_event_loops() -> None:
    starts: list[float] = []

    @opero(rate_limit=50)
    async def fetch() -> None:
        starts.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(fetch(), fetch())

    begin = time.monotonic()
    asyncio.run(main())
    asyncio.run(main())  # a second loop: the limiter holds no loop-bound state
    assert len(starts) == 4
    assert all(at - begin >= k * 0.02 - 1e-6 for k, at in enumerate(sorted(starts)))
    assert time.monotonic() - begin < 1.0


# --- invariants ---------------------------------------------------------------------------


@settings(deadline=None, max_examples=200)
@given(
    rate=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(min_value=1, max_value=5),
    arrivals=st.lists(
        st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=40
    ).map(sorted),
)
def test_granted_starts_respect_rate_and_burst(
    rate: float, burst: int, arrivals: list[float]
) -> None:
    limiter = Limiter(rate=rate, burst=burst)
    interval = 1.0 / rate
    starts = []
    for now in arrivals:
        delay = limiter.reserve(now)
        assert delay >= 0
        starts.append(now + delay)

    def tol(value: float) -> float:
        return 1e-9 * max(1.0, abs(value))

    assert all(b >= a - tol(b) for a, b in itertools.pairwise(starts))
    # Any n+1 consecutive starts with n >= burst span at least (n - burst + 1) intervals:
    # at most `burst` calls start together, the rest follow one interval apart.
    for n in range(burst, len(starts)):
        need = (n - burst + 1) * interval
        for i in range(len(starts) - n):
            assert starts[i + n] - starts[i] >= need - tol(starts[i + n])
    if burst == 1:
        # Never a wait longer than needed: start at arrival or one interval after the last.
        for k, now in enumerate(arrivals[1:], 1):
            expected = max(now, starts[k - 1] + interval)
            assert math.isclose(starts[k], expected, rel_tol=1e-9, abs_tol=1e-9)
