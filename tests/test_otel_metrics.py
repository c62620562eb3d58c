"""OpenTelemetry metrics from the real SDK (in-memory reader) after known call sequences on the
fake clock: every data point carries opero.function, and no candidate's value."""

from __future__ import annotations

import pytest

from opero import AllFailedError, Breaker, opero
from opero.testing import FakeClock
from otel_support import Telemetry, telemetry_fixture  # noqa: F401 - the fixture

SECRET = "sk-live-TOPSECRET-0123456789"


def test_calls_attempts_retries_fallbacks_and_failures(
    clock: FakeClock, telemetry: Telemetry
) -> None:
    state = {"n": 0}

    @opero(retries=1, arg_fallback="key", min_delay=0.5)
    def fetch(key: list[str]) -> str:
        state["n"] += 1
        if key[0] == SECRET or state["n"] == 2:
            raise ConnectionError("down")
        return "ok"

    # attempt 1: candidate 0 fails, candidate 1 fails (n == 2); retry: candidate 0 fails,
    # candidate 1 answers.
    assert fetch([SECRET, "b"]) == "ok"
    with pytest.raises(AllFailedError):
        fetch([SECRET, SECRET])
    name = fetch.__opero__.name
    assert telemetry.total("opero.calls", **{"opero.function": name}) == 2
    assert telemetry.total("opero.calls", **{"opero.outcome": "failure"}) == 1
    assert telemetry.total("opero.failures", **{"error.type": "AllFailedError"}) == 1
    assert telemetry.total("opero.attempts", **{"opero.function": name}) == 8
    assert telemetry.total("opero.retries") == 2
    assert telemetry.total("opero.fallbacks", **{"opero.candidate.index": 1}) == 4
    (backoff,) = telemetry.points("opero.backoff.wait")
    assert (backoff.count, backoff.sum) == (2, 1.0)
    (durations,) = [
        p
        for p in telemetry.points("opero.attempt.duration")
        if p.attributes["opero.outcome"] == "success"
    ]
    assert durations.count == 1
    assert all("opero.function" in p.attributes for p in _every_point(telemetry))
    assert not any(SECRET in str(v) for v in telemetry.every_attribute())


def test_cache_hits_and_misses(telemetry: Telemetry) -> None:
    @opero(cache=True)
    def square(x: int) -> int:
        return x * x

    for x in (1, 1, 2, 1, 2):
        square(x)
    assert telemetry.total("opero.cache.misses") == 2
    assert telemetry.total("opero.cache.hits") == 3


def test_rate_limit_waits_are_a_histogram(clock: FakeClock, telemetry: Telemetry) -> None:
    @opero(rate_limit=2.0)
    def ping() -> str:
        return "pong"

    for _ in range(3):
        ping()
    (waits,) = telemetry.points("opero.rate_limit.wait")
    assert waits.count == 2
    assert waits.sum == pytest.approx(1.0)


def test_breaker_transitions_are_counted_by_state(clock: FakeClock, telemetry: Telemetry) -> None:
    @opero(retries=0, circuit_breaker=Breaker(failure_threshold=1, failure_ratio=None, cooldown=5))
    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(AllFailedError):
        down()
    clock.advance(6)
    with pytest.raises(AllFailedError):
        down()
    assert telemetry.total("opero.breaker.transitions", **{"opero.breaker.state": "open"}) == 2
    assert telemetry.total("opero.breaker.transitions", **{"opero.breaker.state": "half_open"}) == 1


def test_disable_stops_the_metrics(telemetry: Telemetry) -> None:
    import opero.instrumentation as oi  # noqa: PLC0415

    @opero()
    def one() -> int:
        return 1

    one()
    oi.disable()
    one()
    one()
    oi.enable()
    one()
    assert telemetry.total("opero.calls") == 2


def _every_point(telemetry: Telemetry) -> list[object]:
    names = ["opero.calls", "opero.attempts", "opero.retries", "opero.fallbacks"]
    names += ["opero.failures", "opero.attempt.duration", "opero.backoff.wait"]
    return [p for name in names for p in telemetry.points(name)]
