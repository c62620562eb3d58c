"""``candidate_breaker=`` and a server's Retry-After on one candidate (issue 14, CONTRACT 33-34).

All on the fake clock: a revoked key is skipped once its breaker opens, every key
open fails fast with ``CircuitOpenError`` calling nothing, a half-open probe closes
it, a 429 rests one key only, and no log line names a key's value.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from opero import AllFailedError, Breaker, CircuitOpenError, ConfigurationError, opero
from opero.testing import FakeClock

SECRET = "sk-live-9f8e7d6c5b4a"
KEYS = [SECRET, "sk-live-second", "sk-live-third"]


class Revoked(Exception):
    """A 401: this key will never work again."""


class TooMany(Exception):
    """A 429 with the server's delay."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


def test_a_revoked_key_gets_at_most_threshold_plus_probes_per_cooldown(clock: FakeClock) -> None:
    calls: list[str] = []
    breaker = Breaker(failure_threshold=3, failure_ratio=None, cooldown=10, max_cooldown=10)

    @opero(arg_fallback="key", fallback_on=Revoked, retries=0, candidate_breaker=breaker)
    def fetch(key: list[str] = KEYS) -> str:
        calls.append(key[0])
        if key[0] == SECRET:
            raise Revoked
        return key[0]

    results = []
    for _ in range(100):  # 100 calls over 50 virtual seconds: 5 cooldowns
        results.append(fetch())
        clock.advance(0.5)
    assert results == ["sk-live-second"] * 100  # the other keys' success rate stays 100 %
    revoked = calls.count(SECRET)
    # 3 failures open it; then one probe per 10 s cooldown (at most 5 more in 50 s).
    assert 3 <= revoked <= 3 + 5 * 1


def test_every_key_open_raises_circuit_open_without_calling(clock: FakeClock) -> None:
    calls: list[str] = []

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=30),
    )
    def fetch(key: list[str] = KEYS[:2]) -> str:
        calls.append(key[0])
        raise Revoked

    with pytest.raises(AllFailedError):
        fetch()  # both keys fail once: both open
    assert len(calls) == 2
    clock.advance(5)
    with pytest.raises(CircuitOpenError) as caught:
        fetch()
    assert len(calls) == 2  # nothing called
    assert caught.value.candidates == (0, 1)
    assert caught.value.retry_in == pytest.approx(25.0)
    assert SECRET not in str(caught.value)


def test_half_open_probe_closes_on_success(clock: FakeClock) -> None:
    broken = {"on": True}
    calls: list[str] = []

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=10),
    )
    def fetch(key: list[str] = KEYS[:2]) -> str:
        calls.append(key[0])
        if broken["on"]:
            raise Revoked
        return key[0]

    with pytest.raises(AllFailedError):
        fetch()  # both fail and open
    broken["on"] = False
    clock.advance(9)
    with pytest.raises(CircuitOpenError):
        fetch()
    clock.advance(1)
    # Half-open ones come after healthy ones; with none healthy, key 0's probe goes first.
    assert fetch() == SECRET
    assert fetch() == SECRET  # closed again: key 0 is healthy, first in order
    assert calls == [SECRET, "sk-live-second", SECRET, SECRET]


def test_healthy_keys_come_before_a_half_open_one(clock: FakeClock) -> None:
    broken = {"on": True}
    calls: list[str] = []

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=10),
    )
    def fetch(key: list[str] = KEYS[:2]) -> str:
        calls.append(key[0])
        if key[0] == SECRET and broken["on"]:
            raise Revoked
        return key[0]

    assert fetch() == "sk-live-second"  # key 0 fails and opens
    broken["on"] = False
    clock.advance(10)
    assert fetch() == "sk-live-second"  # key 0 is half-open: key 1 (healthy) goes first
    assert calls == [SECRET, "sk-live-second", "sk-live-second"]


def test_an_unrouted_error_gives_the_probe_back(clock: FakeClock) -> None:
    mode = {"error": Revoked()}

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retry_on=Revoked,
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=10),
    )
    def fetch(key: list[str] = KEYS[:1]) -> str:
        raise mode["error"]

    with pytest.raises(AllFailedError):
        fetch()
    clock.advance(10)
    mode["error"] = ValueError("a bug, not the key")
    with pytest.raises(ValueError, match="a bug"):
        fetch()  # the probe's permit is given back: the breaker neither closes nor opens
    with pytest.raises(ValueError, match="a bug"):
        fetch()  # so another probe may go at once


def test_a_429_rests_that_key_only_and_the_next_is_used_at_once(clock: FakeClock) -> None:
    calls: list[tuple[str, float]] = []

    @opero(arg_fallback="key", retries=0, candidate_breaker=True, max_retry_after=60)
    def fetch(key: list[str] = KEYS[:2]) -> str:
        calls.append((key[0], clock.now()))
        if key[0] == SECRET and clock.now() < 1005:
            raise TooMany(5)
        return key[0]

    assert fetch() == "sk-live-second"
    assert calls == [(SECRET, 1000.0), ("sk-live-second", 1000.0)]  # no pause in between
    assert fetch() == "sk-live-second"  # key 0 rests: not called
    assert calls[-1] == ("sk-live-second", 1000.0)
    assert clock.sleeps == []
    clock.advance(5)
    assert fetch() == SECRET  # its rest is over
    assert len(calls) == 4


def test_async_keys_open_and_fail_fast(clock: FakeClock) -> None:
    calls: list[str] = []

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=30),
    )
    async def fetch(key: list[str] = KEYS) -> str:
        calls.append(key[0])
        if key[0] != "sk-live-third":
            raise Revoked
        return key[0]

    async def main() -> list[str]:
        return [await fetch() for _ in range(5)]

    assert asyncio.run(main()) == ["sk-live-third"] * 5
    assert calls == [SECRET, "sk-live-second"] + ["sk-live-third"] * 5


def test_under_a_deadline_it_waits_for_the_reopen(clock: FakeClock) -> None:
    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        deadline=60,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=10),
    )
    def fetch(key: list[str] = KEYS[:1]) -> str:
        if clock.now() < 1001:
            raise Revoked
        return key[0]

    with pytest.raises(AllFailedError):
        fetch()
    clock.advance(2)
    assert fetch() == SECRET  # waited the 8 s left of the cooldown, inside the deadline
    assert clock.sleeps == [pytest.approx(8.0)]


def test_logs_name_keys_by_index_only(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, opero_logger: logging.Logger
) -> None:
    def revoked(error: BaseException) -> bool:
        return isinstance(error, Revoked)

    @opero(
        arg_fallback="key",
        fallback_on=(Revoked, TooMany),
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=10, should_trip=revoked),
    )
    def fetch(key: list[str] = KEYS[:2]) -> str:
        if key[0] == SECRET and clock.now() < 1011:
            raise Revoked
        if key[0] == "sk-live-second":
            raise TooMany(3)
        return key[0]

    with caplog.at_level(logging.DEBUG, logger="opero"):
        with pytest.raises(AllFailedError):
            fetch()  # key 0 opens, key 1 rests
        clock.advance(11)
        assert fetch() == SECRET  # key 1 rests again, key 0's probe closes it
    text = caplog.text
    assert "candidate 0 breaker closed -> open" in text
    assert "candidate 1 rests 3.000s" in text
    assert "candidate 0 breaker open -> half_open" in text
    assert "candidate 0 breaker half_open -> closed" in text
    for key in KEYS:
        assert key not in text


def test_per_candidate_settings_need_arg_fallback() -> None:
    with pytest.raises(ConfigurationError, match="candidate_breaker needs arg_fallback"):
        opero(candidate_breaker=True)
    with pytest.raises(ConfigurationError, match="fallback_strategy"):
        opero(arg_fallback="key", fallback_strategy="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="candidate_rate_limit"):
        opero(arg_fallback="key", candidate_rate_limit=-1)


def test_functions_of_one_named_group_share_their_keys_health(clock: FakeClock) -> None:
    calls: list[tuple[str, str]] = []
    breaker = Breaker(failure_threshold=1, cooldown=60)

    def make(name: str) -> object:
        @opero(
            arg_fallback="key",
            fallback_on=Revoked,
            retries=0,
            candidate_breaker=breaker,
            rate_limit_scope="test-shared-key-pool",
        )
        def fetch(key: list[str] = KEYS[:2]) -> str:
            calls.append((name, key[0]))
            if key[0] == SECRET:
                raise Revoked
            return key[0]

        return fetch

    first, second = make("first"), make("second")
    assert first() == "sk-live-second"  # key 0 fails for the first function: open
    assert second() == "sk-live-second"  # the second skips it
    assert calls == [("first", SECRET), ("first", "sk-live-second"), ("second", "sk-live-second")]
    with pytest.raises(ConfigurationError, match="rate_limit_scope 'test-shared-key-pool'"):
        opero(
            arg_fallback="key",
            candidate_breaker=True,
            rate_limit_scope="test-shared-key-pool",
        )(lambda key=KEYS: key)


def test_a_cancelled_probe_gives_its_permit_back(clock: FakeClock) -> None:
    mode = {"hang": False}

    @opero(
        arg_fallback="key",
        fallback_on=Revoked,
        retries=0,
        candidate_breaker=Breaker(failure_threshold=1, cooldown=10),
    )
    async def fetch(key: list[str] = KEYS[:1]) -> str:
        if mode["hang"]:
            await asyncio.Event().wait()
        if clock.now() < 1010:
            raise Revoked
        return key[0]

    async def main() -> str:
        with pytest.raises(AllFailedError):
            await fetch()  # key 0 opens
        clock.advance(10)
        mode["hang"] = True
        probe = asyncio.ensure_future(fetch())  # takes the only half-open permit
        await asyncio.sleep(0)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        mode["hang"] = False
        return await fetch()  # the permit came back: this call is the probe

    assert asyncio.run(main()) == SECRET
