"""The key pool's fast path keeps every behaviour of the engine (issue 14, overhead target).

A call whose candidate is healthy is made by the shell itself (``opero.core.pool_fast``);
any error hands it to the engine at that call.  Each test here fails if the fast path
skipped something the engine does: counting, opening a breaker, falling back in the
attempt's order, rotating, taking budget slots, leaving half-open and resting
candidates to the engine.  The differential tests run one scenario on a function that
takes the fast path and on a twin that ``retry_if_result`` (which never rejects) keeps
in the engine, and compare everything they report.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from opero import AllFailedError, Breaker, CircuitOpenError, opero
from opero.core import flow
from opero.testing import FakeClock

KEYS = ["sk-a", "sk-b", "sk-c"]
ENGINE = {"flow.py", "drivers.py", "pool_flow.py", "run.py"}
CORE = Path(flow.__file__).parent


class Revoked(Exception):
    """A 401 on one key."""


class TooMany(Exception):
    """A 429 with the server's delay."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


@contextmanager
def engine_frames() -> Iterator[list[str]]:
    """The engine's Python functions called inside the block (by file name)."""
    seen: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        path = Path(frame.f_code.co_filename)
        if event == "call" and path.parent == CORE and path.name in ENGINE:
            seen.append(f"{path.name}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def never(result: object) -> bool:
    """A result check that accepts every result: it only keeps the twin in the engine."""
    return False


def test_a_healthy_candidate_is_called_without_the_engine(clock: FakeClock) -> None:
    @opero(arg_fallback="key", candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        return key[0]

    @opero(arg_fallback="key", candidate_breaker=True, retry_if_result=never)
    def twin(key: list[str] = KEYS) -> str:
        return key[0]

    with engine_frames() as fast:
        assert fetch() == "sk-a"
    with engine_frames() as slow:
        assert twin() == "sk-a"
    assert fast == []
    assert slow != []  # the check itself sees the engine where it runs


def test_a_failure_opens_the_breaker_and_moves_on_with_exact_counts(clock: FakeClock) -> None:
    used: list[str] = []
    breaker = Breaker(failure_threshold=2, failure_ratio=None, cooldown=10, max_cooldown=10)

    @opero(arg_fallback="key", fallback_on=Revoked, retries=0, candidate_breaker=breaker)
    def fetch(key: list[str] = KEYS) -> str:
        used.append(key[0])
        if key[0] == "sk-a":
            raise Revoked
        return key[0]

    assert fetch() == "sk-b"  # the fast path's call to sk-a fails: the engine goes on
    assert fetch() == "sk-b"  # sk-a's second failure opens it
    with engine_frames() as frames:
        assert fetch() == "sk-b"  # sk-a is open: the fast path takes sk-b at once
    assert frames == []
    assert used == ["sk-a", "sk-b", "sk-a", "sk-b", "sk-b"]
    stats = fetch.statistics()
    assert (stats.calls, stats.attempts, stats.fallbacks, stats.failures) == (3, 5, 2, 0)
    a, b, c = stats.candidates
    assert (a.state, a.calls, a.failures, a.in_flight) == ("open", 2, 2, 0)
    assert (b.state, b.calls, b.failures, b.in_flight) == ("closed", 3, 0, 0)
    assert c.calls == 0


def test_every_candidate_failing_on_the_fast_path_gives_up_as_the_engine_does(
    clock: FakeClock,
) -> None:
    @opero(arg_fallback="key", fallback_on=Revoked, retries=1, min_delay=1, candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        raise Revoked

    with pytest.raises(AllFailedError) as caught:
        fetch()
    assert caught.value.attempt_count == 6  # 2 attempts x 3 keys, the first on the fast path
    stats = fetch.statistics()
    assert (stats.calls, stats.attempts, stats.retries, stats.failures) == (1, 6, 1, 1)
    assert [(c.calls, c.failures) for c in stats.candidates] == [(2, 2)] * 3


def test_round_robin_rotates_and_resumes_in_the_rotation(clock: FakeClock) -> None:
    used: list[str] = []

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        fallback_strategy="round_robin",
        candidate_breaker=Breaker(failure_threshold=100, failure_ratio=None),
    )
    def fetch(key: list[str] = KEYS) -> str:
        used.append(key[0])
        if key[0] == "sk-b":
            raise Revoked
        return key[0]

    results = [fetch() for _ in range(6)]
    # Turns 0, 1, 2, ...: sk-b's turns fail and go on to the next in that turn's rotation
    # (sk-c), never back to sk-a as an order by index would.
    assert used == ["sk-a", "sk-b", "sk-c", "sk-c", "sk-a", "sk-b", "sk-c", "sk-c"]
    assert results == ["sk-a", "sk-c", "sk-c", "sk-a", "sk-c", "sk-c"]
    assert [c.calls for c in fetch.statistics().candidates] == [2, 2, 4]


def test_a_half_open_candidate_never_takes_the_fast_path(clock: FakeClock) -> None:
    inner: list[BaseException | str] = []

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=10, half_open_calls=1),
    )
    def fetch(probe: bool, key: list[str] = KEYS[:1]) -> str:
        if probe:  # the one probe permit is taken: a call made meanwhile must be refused
            try:
                inner.append(fetch(False))
            except CircuitOpenError as error:
                inner.append(error)
            return "probed"
        if not inner:
            raise Revoked
        return "ok"

    with pytest.raises(AllFailedError):
        fetch(False)  # the only key opens
    clock.advance(10)  # half-open: one probe
    assert fetch(True) == "probed"
    assert len(inner) == 1
    assert isinstance(inner[0], CircuitOpenError)
    assert fetch.statistics().candidates[0].state == "closed"  # the probe closed it


def test_a_resting_candidate_never_takes_the_fast_path(clock: FakeClock) -> None:
    used: list[str] = []
    asked = [TooMany(5.0)]

    @opero(arg_fallback="key", fallback_on=TooMany, retries=0, candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        used.append(key[0])
        if key[0] == "sk-a" and asked:
            raise asked.pop()
        return key[0]

    assert [fetch() for _ in range(3)] == ["sk-b"] * 3  # sk-a rests 5 s
    clock.advance(5)
    assert fetch() == "sk-a"
    assert used == ["sk-a", "sk-b", "sk-b", "sk-b", "sk-a"]
    assert fetch.statistics().candidates[0].rests == 1


def test_a_busy_budget_goes_to_the_engine_which_picks_a_free_slot(clock: FakeClock) -> None:
    used: list[str] = []

    @opero(arg_fallback="key", candidate_rate_limit=10)
    def fetch(key: list[str] = KEYS) -> str:
        used.append(key[0])
        return key[0]

    for _ in range(4):
        fetch()
    assert used == ["sk-a", "sk-b", "sk-c", "sk-a"]  # each fast pick took its slot
    assert clock.sleeps == [pytest.approx(0.1)]  # the fourth waited for sk-a's next slot
    assert [c.calls for c in fetch.statistics().candidates] == [2, 1, 1]


def test_in_flight_counts_the_fast_paths_call(clock: FakeClock) -> None:
    seen: list[int] = []

    @opero(arg_fallback="key", candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        seen.append(fetch.statistics().candidates[0].in_flight)
        return key[0]

    fetch()
    assert seen == [1]
    assert fetch.statistics().candidates[0].in_flight == 0


def _scenario(breaker: Breaker, **extra: Any) -> Callable[..., str]:
    @opero(
        arg_fallback="key",
        fallback_on=(Revoked, TooMany),
        retry_on=ConnectionError,
        retries=1,
        min_delay=1,
        candidate_breaker=breaker,
        **extra,
    )
    def fetch(n: int, key: list[str] = KEYS) -> str:
        if n % 7 == 3:
            raise KeyError(n)  # unrouted: propagates, no outcome for the key
        if key[0] == "sk-a" and n % 3 == 0:
            raise Revoked
        if key[0] == "sk-b" and n % 5 == 0:
            raise TooMany(2.0)
        if n % 11 == 10:
            raise ConnectionError  # a retry of the whole attempt
        return key[0]

    return fetch


def _play(fetch: Callable[..., str], clock: FakeClock) -> list[str]:
    outcomes = []
    for n in range(60):
        try:
            outcomes.append(fetch(n))
        except (KeyError, AllFailedError, CircuitOpenError) as error:
            outcomes.append(type(error).__name__)
        clock.advance(0.5)
    return outcomes


@pytest.mark.parametrize("strategy", ["ordered", "round_robin"])
def test_the_fast_path_reports_exactly_what_the_engine_reports(strategy: str) -> None:
    breaker = Breaker(failure_threshold=2, failure_ratio=None, cooldown=3, max_cooldown=3)
    reports = []
    for extra in ({}, {"retry_if_result": never}):
        with FakeClock(start=100.0) as clock:
            fetch = _scenario(breaker, fallback_strategy=strategy, **extra)
            outcomes = _play(fetch, clock)
            stats = fetch.statistics()
            reports.append((outcomes, stats, clock.sleeps))
    (fast, fast_stats, fast_sleeps), (slow, slow_stats, slow_sleeps) = reports
    assert fast == slow
    assert fast_stats == slow_stats
    assert fast_sleeps == slow_sleeps
    assert {c.state for c in fast_stats.candidates} != {"closed"}  # breakers did open
    assert sum(c.rests for c in fast_stats.candidates) > 0


def test_async_fast_path_reports_exactly_what_the_engine_reports() -> None:
    breaker = Breaker(failure_threshold=2, failure_ratio=None, cooldown=3, max_cooldown=3)
    reports = []
    for extra in ({}, {"retry_if_result": never}):

        @opero(
            arg_fallback="key",
            fallback_on=Revoked,
            retries=0,
            candidate_breaker=breaker,
            **extra,
        )
        async def fetch(n: int, key: list[str] = KEYS) -> str:
            await asyncio.sleep(0)
            if key[0] == "sk-a" and n % 3 == 0:
                raise Revoked
            if n % 7 == 6:
                raise KeyError(n)
            return key[0]

        async def main(fetch: Any = fetch) -> list[str]:
            outcomes = []
            for n in range(30):
                try:
                    outcomes.append(await fetch(n))
                except (KeyError, AllFailedError, CircuitOpenError) as error:
                    outcomes.append(type(error).__name__)
            return outcomes

        with FakeClock(start=100.0):
            outcomes = asyncio.run(main())
        reports.append((outcomes, fetch.statistics()))
    assert reports[0] == reports[1]
    assert reports[0][1].candidates[0].failures > 0


def test_an_interrupt_on_the_fast_path_leaves_no_call_in_flight(clock: FakeClock) -> None:
    stop = [True]

    @opero(arg_fallback="key", candidate_breaker=Breaker(failure_threshold=1))
    def fetch(key: list[str] = KEYS) -> str:
        if stop:
            stop.pop()
            raise KeyboardInterrupt
        return key[0]

    with pytest.raises(KeyboardInterrupt):
        fetch()
    first = fetch.statistics().candidates[0]
    assert (first.state, first.calls, first.failures, first.in_flight) == ("closed", 1, 0, 0)
    assert fetch() == "sk-a"


def test_a_paused_function_leaves_its_calls_to_the_engine(clock: FakeClock) -> None:
    # A call without a candidate list that gets a Retry-After pauses the whole function
    # (CONTRACT 28); a key-pool call made during that pause waits it out, as the engine's
    # first rate slot does, instead of taking the fast path at once.
    starts: list[tuple[str, float]] = []
    asked = [TooMany(3.0)]

    def nested(error: BaseException, attempt: int) -> None:
        fetch()  # while the function is paused

    @opero(arg_fallback="key", retry_on=TooMany, retries=1, candidate_breaker=True, on_retry=nested)
    def fetch(key: list[str] | str = KEYS) -> str:
        starts.append((key[0], clock.now()))
        if asked:
            raise asked.pop()
        return key[0]

    began = clock.now()
    assert fetch("solo") == "s"  # a string: no candidates, the pause is the function's
    assert starts[1] == ("sk-a", pytest.approx(began + 3.0))  # the nested call waited
