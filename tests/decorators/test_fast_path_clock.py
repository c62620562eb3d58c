"""The key pool's fast path reads no clock on a healthy success (issue 14, overhead).

A closed breaker whose count window holds ``minimum_calls`` outcomes (or that has
no window) needs no time for a success, and a candidate that is not resting is told
by identity (``NOT_RESTING``), so once the window is full a success reads the clock
zero times; a rest makes the pick read it until the rest is seen to be over, then
it is forgotten.  Each count below was one read a call (or more) before.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opero import Breaker, opero
from opero.core.candidate import NOT_RESTING
from opero.testing import FakeClock

KEYS = ["sk-a", "sk-b", "sk-c"]


class CountingClock(FakeClock):
    """A FakeClock that counts its readings."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        return super().now()


class TooMany(Exception):
    """A 429 with the server's delay."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


@pytest.fixture
def counting() -> Iterator[CountingClock]:
    with CountingClock() as clock:
        yield clock


def reads_of(clock: CountingClock, calls: int, call: object) -> int:
    before = clock.reads
    for _ in range(calls):
        call()  # type: ignore[operator]
    return clock.reads - before


def test_a_full_window_success_reads_no_clock(counting: CountingClock) -> None:
    @opero(arg_fallback="key", candidate_breaker=True)  # a 20-call window, minimum 10
    def fetch(key: list[str] = KEYS) -> str:
        return key[0]

    filling = reads_of(counting, 10, fetch)
    assert 1 <= filling <= 10  # a success that fills the window may open it: it is timed
    assert reads_of(counting, 200, fetch) == 0
    assert fetch.statistics().candidates[0].calls == 210


def test_a_breaker_without_a_window_never_reads_the_clock(counting: CountingClock) -> None:
    @opero(arg_fallback="key", candidate_breaker=Breaker(failure_threshold=3, failure_ratio=None))
    def fetch(key: list[str] = KEYS) -> str:
        return key[0]

    assert reads_of(counting, 100, fetch) == 0


def test_a_budget_reads_the_clock_once_a_call(counting: CountingClock) -> None:
    @opero(arg_fallback="key", candidate_breaker=True, candidate_rate_limit=1e9)
    def fetch(key: list[str] = KEYS) -> str:
        return key[0]

    def spaced() -> str:
        counting.advance(0.001)  # a free slot each time (advancing reads nothing)
        return fetch()

    reads_of(counting, 10, spaced)
    assert reads_of(counting, 50, spaced) == 50  # the slot is taken at the time it is free


def test_an_expired_rest_is_read_once_then_forgotten(counting: CountingClock) -> None:
    asked = [TooMany(5.0)]

    @opero(arg_fallback="key", fallback_on=TooMany, retries=0, candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        if key[0] == "sk-a" and asked:
            raise asked.pop()
        return key[0]

    assert fetch() == "sk-b"  # sk-a rests 5 s
    reads_of(counting, 20, fetch)  # sk-b's window fills
    pool = fetch.statistics().candidates
    assert pool[0].rests == 1
    assert reads_of(counting, 5, fetch) == 5  # resting: each pick reads the clock
    assert [fetch() for _ in range(2)] == ["sk-b", "sk-b"]
    counting.advance(5)
    assert fetch() == "sk-a"  # over: seen once, forgotten
    reads_of(counting, 10, fetch)  # sk-a's window fills
    assert reads_of(counting, 50, fetch) == 0
    assert fetch.statistics().candidates[0].reopens_in is None


def test_a_rest_set_after_the_pick_saw_it_over_is_kept() -> None:
    from opero.core.candidate import Candidate  # noqa: PLC0415

    key = Candidate(breaker=Breaker())
    key.rest(now=0.0, seconds=1.0)
    seen = key.rest_until
    key.rest(now=0.5, seconds=2.0)  # a newer 429 before the forgetting
    key.rested(seen)
    assert key.rest_until == 2.5
    key.rested(2.5)
    assert key.rest_until is NOT_RESTING
    assert not key.resting(0.0)
