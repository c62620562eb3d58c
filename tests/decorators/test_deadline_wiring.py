"""deadline= and attempt_timeout= wired into the engine (CONTRACT 29, 30), on the fake clock.

No wait (backoff, Retry-After, rate slot, fallback pause) that would end past the
deadline is started; each attempt's timeout is cut to the time left; past the
deadline the call raises DeadlineExceeded holding every error so far.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import opero
from opero import AllFailedError, DeadlineExceeded
from opero.core import clock as opero_clock
from opero.testing import FakeClock
from shells import Shell


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("429")
        self.retry_after = retry_after


def test_instructor_1711_a_120s_budget_ends_by_120s_async(clock: FakeClock) -> None:
    """tenacity's stop_after_delay(120) ran to 210 s: attempts of 50 s went on past it."""
    starts: list[float] = []

    @opero.opero(retries=10, min_delay=5, deadline=120)
    async def ask_llm() -> str:
        starts.append(clock.now())
        await opero_clock.async_sleep(50)  # a slow upstream, on virtual time
        raise ConnectionError("overloaded")

    with pytest.raises(DeadlineExceeded) as info:
        asyncio.run(ask_llm())
    assert clock.now() <= 1120.01
    assert starts == [1000.0, 1055.0, 1112.5]
    kinds = [type(e) for e in info.value.errors]
    assert kinds[:2] == [ConnectionError, ConnectionError]
    assert issubclass(kinds[2], TimeoutError)  # the third attempt, cut at the deadline


def test_instructor_1711_sync_attempts_see_the_time_left(clock: FakeClock) -> None:
    seen: list[float | None] = []

    @opero.opero(retries=10, min_delay=5, deadline=120)
    def ask_llm() -> str:
        left = opero.remaining()
        seen.append(left)
        clock.advance(min(50.0, left or 0.0))  # a client given timeout=opero.remaining()
        raise ConnectionError("overloaded")

    with pytest.raises(DeadlineExceeded):
        ask_llm()
    assert clock.now() <= 1120.01
    assert seen == [120.0, 65.0, 7.5]
    assert threading.current_thread() is threading.main_thread()
    assert opero.remaining() is None


def test_a_backoff_that_would_end_past_the_deadline_is_not_started(
    clock: FakeClock, shell: Shell
) -> None:
    calls: list[float] = []

    def body() -> None:
        calls.append(clock.now())
        raise ConnectionError("down")

    f = opero.opero(retries=5, min_delay=4, backoff_factor=2, deadline=10)(shell.fn(body))
    with pytest.raises(DeadlineExceeded) as info:
        shell.call(f)
    assert calls == [1000.0, 1004.0]
    assert clock.sleeps == [4.0]  # the 8 s wait would end at 1012
    assert clock.now() == 1004.0
    assert len(info.value.errors) == 2
    assert isinstance(info.value.__cause__, ConnectionError)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, AllFailedError)


def test_a_retry_after_wait_past_the_deadline_ends_the_call_at_once(
    clock: FakeClock, shell: Shell
) -> None:
    def body() -> None:
        raise RateLimited(30)

    f = opero.opero(retries=3, max_retry_after=60, deadline=10)(shell.fn(body))
    with pytest.raises(DeadlineExceeded) as info:
        shell.call(f)
    assert [s for s in clock.sleeps if s > 0] == []
    assert [type(e) for e in info.value.errors] == [RateLimited]


def test_a_rate_slot_past_the_deadline_ends_the_call_without_calling(
    clock: FakeClock, shell: Shell
) -> None:
    calls: list[float] = []

    def body() -> str:
        calls.append(clock.now())
        return "ok"

    f = opero.opero(rate_limit=0.1, deadline=5)(shell.fn(body))
    assert shell.call(f) == "ok"
    with pytest.raises(DeadlineExceeded) as info:
        shell.call(f)  # the next slot is 10 s away
    assert calls == [1000.0]
    assert info.value.errors == []
    assert clock.now() == 1000.0


def test_the_deadline_counts_from_before_the_rate_wait(clock: FakeClock) -> None:
    seen: list[float | None] = []

    @opero.opero(rate_limit=1, deadline=1.5)
    def body() -> None:
        seen.append(opero.remaining())

    body()
    body()  # waits 1 s for its slot: 0.5 s are left for the attempt
    assert seen == [1.5, 0.5]


def test_a_fallback_pause_past_the_deadline_is_not_started(clock: FakeClock, shell: Shell) -> None:
    seen: list[str] = []

    def body(key: list[str]) -> None:
        seen.append(key[0])
        raise PermissionError("401")

    f = opero.opero(arg_fallback="key", fallback_delay=10, deadline=5)(shell.fn(body))
    with pytest.raises(DeadlineExceeded):
        shell.call(f, ["a", "b"])
    assert seen == ["a"]
    assert clock.sleeps == []


def test_async_attempts_are_cut_at_the_attempt_timeout_and_retried(clock: FakeClock) -> None:
    starts: list[float] = []

    @opero.opero(retries=2, min_delay=1, backoff_factor=1, attempt_timeout=10)
    async def hangs() -> None:
        starts.append(clock.now())
        await opero_clock.async_sleep(50)

    with pytest.raises(AllFailedError) as info:
        asyncio.run(hangs())
    assert starts == [1000.0, 1011.0, 1022.0]
    assert all(isinstance(e, TimeoutError) for e in info.value.errors)
    assert not isinstance(info.value, DeadlineExceeded)


def test_sync_attempts_run_on_a_worker_thread_only_with_attempt_timeout(
    clock: FakeClock,
) -> None:
    threads: list[threading.Thread] = []

    @opero.opero(attempt_timeout=5)
    def timed() -> float | None:
        threads.append(threading.current_thread())
        return opero.remaining()

    @opero.opero(deadline=5)
    def bounded() -> float | None:
        threads.append(threading.current_thread())
        return opero.remaining()

    assert timed() == 5.0
    assert bounded() == 5.0
    assert threads[0] is not threading.main_thread()
    assert threads[1] is threading.main_thread()


def test_an_attempts_timeout_is_routed_like_any_error(clock: FakeClock, shell: Shell) -> None:
    def body() -> None:
        raise TimeoutError("the client's own timeout")

    covered = opero.opero(retries=1, min_delay=0, attempt_timeout=5)(shell.fn(body))
    with pytest.raises(AllFailedError):
        shell.call(covered)
    not_covered = opero.opero(retries=3, retry_on=ConnectionError, attempt_timeout=5)(
        shell.fn(body)
    )
    with pytest.raises(TimeoutError) as info:
        shell.call(not_covered)
    assert not isinstance(info.value, AllFailedError)  # unwrapped, as any uncovered error


def test_attempt_timeout_is_cut_to_the_time_left(clock: FakeClock, shell: Shell) -> None:
    seen: list[float | None] = []

    def body() -> None:
        seen.append(opero.remaining())
        clock.advance(3)
        raise ConnectionError("down")

    f = opero.opero(retries=5, min_delay=1, backoff_factor=1, attempt_timeout=5, deadline=10)(
        shell.fn(body)
    )
    with pytest.raises(DeadlineExceeded):
        shell.call(f)
    # attempts at 1000, 1004, 1008: the last gets 2 s, not 5
    assert seen == [5.0, 5.0, 2.0]


def _ends_within_50ms(run_once: Callable[[], float]) -> None:
    """Issue 13: a 0.5 s budget ends within 50 ms of it, in real time.

    The engine's end is deterministic (no wait is started past the deadline, and the
    last attempt is cut at it); only the scheduler of a loaded machine adds lateness.
    So every run must end before 0.5 + 0.25 s, and at least one of up to three runs
    within 0.5 + 0.05 s.  ``run_once`` returns the seconds one call took.
    """
    late: list[float] = []
    for _ in range(3):
        elapsed = run_once()
        assert 0.45 <= elapsed < 0.5 + 0.25
        if elapsed < 0.5 + 0.05:
            return
        late.append(round(elapsed - 0.5, 3))
    pytest.fail(f"no call ended within 50 ms of its 0.5 s deadline (seconds late: {late})")


def test_real_time_a_half_second_budget_ends_on_time_async() -> None:
    @opero.opero(retries=50, min_delay=0.05, deadline=0.5)
    async def hangs() -> None:
        await asyncio.sleep(0.3)
        raise ConnectionError("slow")

    async def timed() -> float:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await hangs()
        return time.monotonic() - start

    _ends_within_50ms(lambda: asyncio.run(timed()))


def test_real_time_a_half_second_budget_ends_on_time_sync() -> None:
    @opero.opero(retries=50, min_delay=0.05, attempt_timeout=0.3, deadline=0.5)
    def hangs() -> None:
        time.sleep(0.6)

    def timed() -> float:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            hangs()
        return time.monotonic() - start

    _ends_within_50ms(timed)


def test_deadline_exceeded_fires_on_failure_once(clock: FakeClock, shell: Shell) -> None:
    failures: list[BaseException] = []

    def body() -> None:
        raise ConnectionError("down")

    f = opero.opero(retries=5, min_delay=4, deadline=5, on_failure=failures.append)(shell.fn(body))
    with pytest.raises(DeadlineExceeded) as info:
        shell.call(f)
    assert failures == [info.value]
    stats: Any = f.statistics()
    assert (stats.calls, stats.failures) == (1, 1)


def test_async_attempt_timeout_alone_keeps_rate_slots_and_pauses(clock: FakeClock) -> None:
    starts: list[float] = []

    @opero.opero(attempt_timeout=5, rate_limit=2, retries=1, min_delay=0)
    async def limited(fail: bool) -> str:
        starts.append(clock.now())
        if fail:
            raise ConnectionError("down")
        return "ok"

    @opero.opero(attempt_timeout=5, retries=0)
    async def paused(status: int) -> int:
        starts.append(clock.now())
        if status == 429:
            raise RateLimited(7)
        return status

    async def main() -> None:
        assert await limited(False) == "ok"
        with pytest.raises(AllFailedError):
            await limited(True)  # its retry takes the next slot too
        with pytest.raises(AllFailedError):
            await paused(429)
        assert await paused(200) == 200

    asyncio.run(main())
    assert starts == [1000.0, 1000.5, 1001.0, 1001.0, 1008.0]


def test_no_retry_is_announced_that_the_deadline_does_not_allow(
    clock: FakeClock, shell: Shell
) -> None:
    announced: list[int] = []

    def body() -> None:
        raise ConnectionError("down")

    f = opero.opero(
        retries=5,
        min_delay=4,
        backoff_factor=2,
        deadline=10,
        on_retry=lambda error, attempt: announced.append(attempt),
    )(shell.fn(body))
    with pytest.raises(DeadlineExceeded):
        shell.call(f)
    assert announced == [1]  # the second retry's 8 s wait never started
    assert f.statistics().retries == 1


def test_a_call_refused_its_rate_slot_by_the_deadline_is_still_a_call(
    clock: FakeClock, shell: Shell
) -> None:
    def body() -> str:
        return "ok"

    f = opero.opero(rate_limit=0.1, deadline=5)(shell.fn(body))
    shell.call(f)
    with pytest.raises(DeadlineExceeded):
        shell.call(f)
    stats = f.statistics()
    assert (stats.calls, stats.attempts, stats.failures) == (2, 1, 1)


@pytest.mark.parametrize(
    "settings",
    [{"attempt_timeout": 5}, {"deadline": 5}, {"attempt_timeout": 5, "deadline": 9}],
    ids=["attempt_timeout", "deadline", "both"],
)
def test_arguments_that_do_not_fit_are_not_retried_when_timed(
    clock: FakeClock, shell: Shell, settings: dict[str, Any]
) -> None:
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x

    f = opero.opero(retries=3, **settings)(shell.fn(body))
    with pytest.raises(TypeError):
        shell.call(f, 1, 2)  # one argument too many: no attempt could ever succeed
    assert calls == []
    assert clock.sleeps == []


def test_the_engine_counts_a_call_as_the_shell_does(clock: FakeClock, shell: Shell) -> None:
    def body(key: list[str]) -> str:
        return key[0]

    plain = opero.opero(arg_fallback="key")(shell.fn(body))
    timed = opero.opero(arg_fallback="key", deadline=5)(shell.fn(body))
    for f in (plain, timed):
        assert shell.call(f, ["a"]) == "a"
        with pytest.raises(opero.ConfigurationError, match="empty list"):
            shell.call(f, [])
    assert plain.statistics() == timed.statistics()
