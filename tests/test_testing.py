"""opero.testing: the fake clock and the no-waits switch."""

from __future__ import annotations

import asyncio
import time

import pytest

from opero import AllFailedError, opero
from opero.core import clock as opero_clock
from opero.core.clock import SystemClock
from opero.testing import FakeClock, no_waits, use_clock


def test_sleep_advances_time_and_records_it() -> None:
    clock = FakeClock(start=5.0)
    assert clock.now() == 5.0
    clock.sleep(1.5)
    clock.sleep(0)
    clock.sleep(2)
    assert clock.now() == 8.5
    assert clock.sleeps == [1.5, 0.0, 2.0]
    assert all(type(s) is float for s in clock.sleeps)


def test_negative_sleep_is_recorded_but_does_not_move_time() -> None:
    clock = FakeClock()
    clock.sleep(-1)
    assert clock.now() == 0.0
    assert clock.sleeps == [-1.0]


def test_advance_moves_time_without_recording_a_sleep() -> None:
    clock = FakeClock()
    clock.advance(3)
    clock.advance(0)
    assert clock.now() == 3.0
    assert clock.sleeps == []


def test_advance_backwards_is_a_value_error() -> None:
    clock = FakeClock(start=10)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-0.5)
    assert clock.now() == 10.0


def test_async_sleep_advances_time() -> None:
    clock = FakeClock()

    async def main() -> None:
        await clock.async_sleep(2)
        await clock.async_sleep(0.5)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 0.5
    assert clock.now() == 2.5
    assert clock.sleeps == [2.0, 0.5]


def test_concurrent_async_sleepers_wake_in_order() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.async_sleep(seconds)
        woke.append((name, clock.now()))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3), sleeper("a", 1), sleeper("b", 2))

    asyncio.run(main())
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 3.0


def test_context_manager_installs_and_restores() -> None:
    before = opero_clock.current()
    assert isinstance(before, SystemClock)
    with FakeClock(start=42.0) as clock:
        assert opero_clock.current() is clock
        assert opero_clock.now() == 42.0
        opero_clock.sleep(8)  # opero's own sleep goes to the fake clock
        assert clock.now() == 50.0
        assert clock.sleeps == [8.0]
    assert opero_clock.current() is before
    assert abs(opero_clock.now() - time.monotonic()) < 1.0


def test_nested_fake_clocks_restore_in_order() -> None:
    before = opero_clock.current()
    with FakeClock(start=1.0) as outer:
        with FakeClock(start=100.0) as inner:
            assert opero_clock.now() == 100.0
            assert opero_clock.current() is inner
        assert opero_clock.current() is outer
        assert opero_clock.now() == 1.0
    assert opero_clock.current() is before


def test_the_same_fake_clock_can_be_entered_twice() -> None:
    before = opero_clock.current()
    clock = FakeClock()
    with clock, clock:
        clock.advance(1)
    assert opero_clock.current() is before
    with clock:
        assert opero_clock.now() == 1.0
    assert opero_clock.current() is before


def test_context_manager_restores_after_an_exception() -> None:
    before = opero_clock.current()
    with pytest.raises(KeyError), FakeClock():
        raise KeyError("boom")
    assert opero_clock.current() is before


def test_use_clock_installs_any_clock() -> None:
    before = opero_clock.current()
    clock = FakeClock(start=7.0)
    with use_clock(clock) as installed:
        assert installed is clock
        assert opero_clock.now() == 7.0
    assert opero_clock.current() is before


def test_retry_backoff_uses_the_fake_clock() -> None:
    calls: list[float] = []
    with FakeClock() as clock:

        @opero(retries=2, min_delay=1, backoff_factor=3)
        def flaky() -> str:
            calls.append(clock.now())
            if len(calls) < 3:
                raise ConnectionError("not yet")
            return "ok"

        assert flaky() == "ok"
    assert calls == [0.0, 1.0, 4.0]
    assert clock.sleeps == [1.0, 3.0]


def test_no_waits_removes_backoff_delays() -> None:
    calls = 0

    @opero(retries=3, min_delay=5)
    def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    started = time.monotonic()
    with no_waits(), pytest.raises(AllFailedError) as info:
        always_fails()
    elapsed = time.monotonic() - started
    assert calls == 4
    assert info.value.attempt_count == 4
    assert elapsed < 0.5  # the backoff alone would be 5 + 7.5 + 11.25 s
    assert always_fails.statistics().retries == 3


def test_no_waits_keeps_real_time_and_restores_the_clock() -> None:
    before = opero_clock.current()
    with no_waits():
        assert opero_clock.current() is not before
        assert abs(opero_clock.now() - time.monotonic()) < 0.1
        started = time.monotonic()
        opero_clock.sleep(30)
        assert time.monotonic() - started < 0.5
    assert opero_clock.current() is before


def test_no_waits_removes_rate_limit_waits_for_async_functions() -> None:
    @opero(rate_limit=1)
    async def ping(i: int) -> int:
        return i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(ping(i) for i in range(5))))

    started = time.monotonic()
    with no_waits():
        assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert time.monotonic() - started < 0.5  # 4 s of rate-limit waits for real


def test_cache_ttl_expires_when_the_fake_clock_moves() -> None:
    computed: list[int] = []
    with FakeClock() as clock:

        @opero(cache=True, cache_ttl=10)
        def square(x: int) -> int:
            computed.append(x)
            return x * x

        assert square(3) == 9
        clock.advance(9.9)
        assert square(3) == 9
        assert computed == [3]  # still fresh at +9.9 s
        clock.advance(0.1)
        assert square(3) == 9
        assert computed == [3, 3]  # expired at +10 s
        assert square(3) == 9
        assert computed == [3, 3]  # the new entry lives another 10 s
    stats = square.statistics()
    assert (stats.cache_hits, stats.cache_misses) == (2, 2)


# -- virtual timers (what attempt_timeout= cuts with) ------------------------------------


def test_a_timer_fires_once_when_advance_or_sleep_passes_it() -> None:
    clock = FakeClock()
    fired: list[float] = []
    clock.call_at(2.0, lambda: fired.append(clock.now()))
    clock.advance(1)
    assert fired == []
    clock.advance(1.5)
    clock.sleep(5)
    assert fired == [2.5]  # once, at the time the clock reached
    later = clock.call_at(10.0, lambda: fired.append(clock.now()))
    clock.sleep(4)  # a jump past the timer: it fires at the time the jump reached
    assert fired == [2.5, 11.5]
    later.cancel()


def test_a_cancelled_timer_never_fires_and_fire_moves_time_to_it() -> None:
    clock = FakeClock()
    fired: list[float] = []
    clock.call_at(1.0, lambda: fired.append(-1)).cancel()
    clock.advance(2)
    assert fired == []
    timer = clock.call_at(7.0, lambda: fired.append(clock.now()))
    timer.fire()
    timer.fire()
    assert fired == [7.0]
    assert clock.now() == 7.0
    timer.cancel()
    assert clock.sleeps == []


def test_an_async_sleeper_due_after_a_timer_lets_it_fire_first_at_its_own_time() -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    timer = clock.call_at(1.0, lambda: seen.append(("timer", clock.now())))

    async def sleeper() -> None:
        await clock.async_sleep(3)
        seen.append(("sleeper", clock.now()))

    async def cancel_soon() -> None:
        while not timer.fired:
            await asyncio.sleep(0)
        seen.append(("held", clock.now()))  # a fired timer holds sleepers until cancelled
        timer.cancel()

    async def main() -> None:
        await asyncio.gather(sleeper(), cancel_soon())

    asyncio.run(main())
    assert seen == [("timer", 1.0), ("held", 1.0), ("sleeper", 3.0)]
    assert clock.sleeps == [3.0]


def test_a_sleep_ending_exactly_at_a_timer_wakes_before_it_fires() -> None:
    clock = FakeClock()
    fired: list[float] = []
    timer = clock.call_at(2.0, lambda: fired.append(clock.now()))

    async def main() -> list[float]:
        await clock.async_sleep(2)
        return list(fired)

    assert asyncio.run(main()) == []
    timer.cancel()
    assert clock.now() == 2.0


def test_async_attempt_timeout_cuts_at_exactly_the_timeout_on_the_fake_clock() -> None:
    from opero.core.timeouts import acall_within  # noqa: PLC0415 - the feature under test

    async def attempt() -> None:
        await clock.async_sleep(30)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await acall_within(attempt, (), {}, 1.0)

    with FakeClock(start=50.0) as clock:
        started = time.monotonic()
        asyncio.run(main())
        assert clock.now() == 51.0
        assert time.monotonic() - started < 0.5


def test_asyncio_sleep_patched_with_the_fake_clock_is_cut_at_exactly_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opero.core.timeouts import acall_within  # noqa: PLC0415 - the feature under test

    async def attempt() -> None:
        await asyncio.sleep(30)  # the user's code, unaware of opero's clock

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await acall_within(attempt, (), {}, 1.0)

    with FakeClock(start=50.0) as clock:
        monkeypatch.setattr(asyncio, "sleep", clock.async_sleep)
        asyncio.run(main())
        monkeypatch.undo()
        assert clock.now() == 51.0
        assert clock.sleeps == [30.0]
