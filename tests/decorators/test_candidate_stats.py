"""Each candidate's statistics, by index (issue 14 item 6: visibility with no secrets).

``statistics().candidates`` and ``get_opero_info()["candidates"]`` show every
``arg_fallback`` candidate's calls, failures, rests, breaker state, time until it
takes calls again and budget used; ``statistics().breaker`` the state of
``circuit_breaker=``.  All on the fake clock; the candidates look like API keys, and
none of their values may show in any of it.
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from opero import AllFailedError, Breaker, CandidateStatistics, opero
from opero.testing import FakeClock
from opero.utils.introspection import analyze_function, get_opero_info

SECRET = "sk-live-9f8e7d6c5b4a"
KEYS = [SECRET, "sk-live-second-3c2b1a", "sk-live-third-7a6b5c"]
FIELDS = {
    "index",
    "state",
    "reopens_in",
    "calls",
    "failures",
    "rests",
    "in_flight",
    "budget_used",
}


class Revoked(Exception):
    """A 401: this key will never work again."""


class TooMany(Exception):
    """A 429 with the server's delay."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


def _no_secret_in(*texts: str) -> None:
    for text in texts:
        for key in KEYS:
            assert key not in text
            assert key[8:] not in text  # not even the tail of one


def test_calls_failures_and_an_open_breaker_by_index(clock: FakeClock) -> None:
    breaker = Breaker(failure_threshold=2, failure_ratio=None, cooldown=10, max_cooldown=10)

    @opero(arg_fallback="key", fallback_on=Revoked, retries=0, candidate_breaker=breaker)
    def fetch(key: list[str] = KEYS) -> str:
        if key[0] == SECRET:
            raise Revoked(key[0])  # the error's text holds the key: it must not leak
        return "ok"

    for _ in range(3):  # key 0 fails twice (then it is open), key 1 answers all three
        assert fetch() == "ok"
    clock.advance(4)
    first, second, third = fetch.statistics().candidates
    assert first == CandidateStatistics(
        index=0,
        state="open",
        reopens_in=pytest.approx(6.0),  # type: ignore[arg-type]
        calls=2,
        failures=2,
        rests=0,
        in_flight=0,
        budget_used=None,
    )
    assert (second.index, second.state, second.calls, second.failures) == (1, "closed", 3, 0)
    assert (third.calls, third.reopens_in) == (0, None)
    assert fetch.statistics().breaker is None  # no circuit_breaker=
    clock.advance(6)
    assert fetch.statistics().candidates[0].state == "half_open"


def test_a_retry_after_rests_the_candidate_and_is_counted(clock: FakeClock) -> None:
    asked = iter([TooMany(5.0)])

    @opero(arg_fallback="key", fallback_on=TooMany, retries=0, candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        if key[0] == SECRET and (error := next(asked, None)) is not None:
            raise error
        return "ok"

    assert fetch() == "ok"  # key 0 rests 5 s, key 1 answers at once
    clock.advance(2)
    first = fetch.statistics().candidates[0]
    assert (first.calls, first.rests, first.failures, first.state) == (1, 1, 1, "closed")
    assert first.reopens_in == pytest.approx(3.0)
    assert fetch() == "ok"  # still resting: key 1 again
    assert [c.calls for c in fetch.statistics().candidates] == [1, 2, 0]
    clock.advance(3)
    assert fetch() == "ok"  # rested: back to key 0
    stats = fetch.statistics().candidates
    assert [c.calls for c in stats] == [2, 2, 0]
    assert stats[0].reopens_in is None


def test_should_trip_false_is_not_a_failure(clock: FakeClock) -> None:
    breaker = Breaker(failure_threshold=1, should_trip=lambda error: False)

    @opero(arg_fallback="key", fallback_on=Revoked, retries=0, candidate_breaker=breaker)
    def fetch(key: list[str] = KEYS) -> str:
        if key[0] == SECRET:
            raise Revoked
        return "ok"

    fetch()
    first = fetch.statistics().candidates[0]
    assert (first.calls, first.failures, first.state) == (1, 0, "closed")


def test_budget_used_is_the_share_of_the_burst_booked_ahead(clock: FakeClock) -> None:
    @opero(arg_fallback="key", candidate_rate_limit=10, candidate_rate_limit_burst=2)
    def fetch(key: list[str] = KEYS) -> str:
        return key[0]

    assert [c.budget_used for c in fetch.statistics().candidates] == []  # none made yet
    for _ in range(3):  # key 0 takes its burst of 2, key 1 the third call
        fetch()
    used = [c.budget_used for c in fetch.statistics().candidates]
    assert used == pytest.approx([1.0, 0.5, 0.0])
    clock.advance(0.1)
    used = [c.budget_used for c in fetch.statistics().candidates]
    assert used == pytest.approx([0.5, 0.0, 0.0])
    assert [c.failures for c in fetch.statistics().candidates] == [0, 0, 0]


def test_without_a_breaker_a_routed_error_is_a_failure(clock: FakeClock) -> None:
    @opero(arg_fallback="key", fallback_on=Revoked, retries=0, fallback_strategy="round_robin")
    def fetch(key: list[str] = KEYS) -> str:
        if key[0] == SECRET:
            raise Revoked
        return "ok"

    for _ in range(3):
        fetch()
    stats = fetch.statistics().candidates
    assert [(c.calls, c.failures) for c in stats] == [(1, 1), (2, 0), (1, 0)]  # orders 012 120 201
    assert {c.state for c in stats} == {"closed"}


def test_an_unrouted_error_is_a_call_but_no_failure(clock: FakeClock) -> None:
    @opero(arg_fallback="key", fallback_on=Revoked, retry_on=Revoked, candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        raise KeyError(key[0])

    with pytest.raises(KeyError):
        fetch()
    first = fetch.statistics().candidates[0]
    assert (first.calls, first.failures, first.in_flight) == (1, 0, 0)


def test_circuit_breaker_state_in_statistics_and_info(clock: FakeClock) -> None:
    @opero(retries=0, circuit_breaker=Breaker(failure_threshold=1, cooldown=10))
    def ping() -> str:
        raise ConnectionError

    assert ping.statistics().breaker == "closed"
    assert ping.statistics().candidates == ()
    with pytest.raises(AllFailedError):
        ping()
    assert ping.statistics().breaker == "open"
    info = get_opero_info(ping)
    assert (info["circuit_breaker"], info["candidates"]) == ("open", [])
    assert "Circuit breaker: open" in analyze_function(ping)
    clock.advance(10)
    assert get_opero_info(ping)["circuit_breaker"] == "half_open"


def test_info_shows_each_candidate_as_a_dict_and_never_a_value(clock: FakeClock) -> None:
    @opero(arg_fallback="key", fallback_on=(Revoked, TooMany), candidate_breaker=True, retries=0)
    def fetch(key: list[str] = KEYS) -> str:
        if key[0] == SECRET:
            raise Revoked(f"key {key[0]} revoked")
        if key[0] == KEYS[1]:
            raise TooMany(30)
        return key[0]

    assert fetch() == KEYS[2]
    info = get_opero_info(fetch)
    assert [set(c) for c in info["candidates"]] == [FIELDS] * 3
    assert [c["index"] for c in info["candidates"]] == [0, 1, 2]
    assert info["statistics"]["candidates"] == info["candidates"]
    assert info["candidates"][1]["rests"] == 1
    assert info["circuit_breaker"] is None
    _no_secret_in(
        json.dumps(info, default=str),
        repr(fetch.statistics()),
        str(fetch.statistics().as_dict()),
        analyze_function(fetch),
    )
    assert "Candidate 1: closed, 1 calls, 1 failures, 1 rests" in analyze_function(fetch)


def test_no_key_pool_has_no_candidates(clock: FakeClock) -> None:
    @opero(arg_fallback="key")
    def fetch(key: list[str] = KEYS) -> str:
        return key[0]

    fetch()
    assert fetch.statistics().candidates == ()
    assert get_opero_info(fetch)["candidates"] == []


def test_async_counts_are_the_same(clock: FakeClock) -> None:
    @opero(arg_fallback="key", fallback_on=Revoked, retries=0, candidate_breaker=True)
    async def fetch(key: list[str] = KEYS) -> str:
        await asyncio.sleep(0)
        if key[0] == SECRET:
            raise Revoked
        return "ok"

    async def main() -> None:
        await asyncio.gather(*(fetch() for _ in range(4)))

    asyncio.run(main())
    stats = fetch.statistics().candidates
    assert [(c.calls, c.failures) for c in stats[:2]] == [(4, 4), (4, 0)]
    assert sum(c.in_flight for c in stats) == 0


def test_counts_from_many_threads_are_exact(clock: FakeClock) -> None:
    breaker = Breaker(failure_threshold=10**6, failure_ratio=None)

    @opero(arg_fallback="key", fallback_on=Revoked, retries=0, candidate_breaker=breaker)
    def fetch(n: int, key: list[str] = KEYS) -> str:
        if key[0] == SECRET and n % 3 == 0:
            raise Revoked
        return "ok"

    def work() -> None:
        for n in range(300):
            fetch(n)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second, _ = fetch.statistics().candidates
    assert (first.calls, first.failures) == (8 * 300, 8 * 100)
    assert (second.calls, second.failures) == (8 * 100, 0)
    assert fetch.statistics().calls == 8 * 300
    assert fetch.statistics().fallbacks == 8 * 100
