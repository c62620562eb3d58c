"""examples/fastapi_app.py: an @opero route behind FastAPI's TestClient, upstream in process."""

from __future__ import annotations

from contextlib import closing

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")  # starlette's TestClient transport

from examples.fastapi_app import create_app
from fastapi.testclient import TestClient

from opero.testing import FakeClock


class FlakyPrices:
    """The upstream: raises ``error`` on the first ``failures`` calls, then answers.

    Every call is recorded in :attr:`calls`, so tests count real upstream calls.
    """

    def __init__(
        self,
        failures: int = 0,
        error: type[Exception] = ConnectionError,
        prices: dict[str, float] | None = None,
    ) -> None:
        self.failures = failures
        self.error = error
        self.prices = {"ACME": 12.5} if prices is None else prices
        self.calls: list[str] = []

    async def __call__(self, symbol: str) -> float | None:
        self.calls.append(symbol)
        if len(self.calls) <= self.failures:
            raise self.error("upstream reset the connection")
        return self.prices.get(symbol)


def test_a_flaky_upstream_is_retried_with_backoff(clock: FakeClock) -> None:
    upstream = FlakyPrices(failures=2)
    with TestClient(create_app(upstream)) as client:
        response = client.get("/quotes/ACME")

    assert response.status_code == 200
    assert response.json() == {"symbol": "ACME", "price": 12.5}
    assert upstream.calls == ["ACME"] * 3
    assert clock.sleeps == pytest.approx([0.2, 0.3])  # min_delay, then x1.5


def test_answers_are_cached_per_symbol_until_the_ttl_passes(clock: FakeClock) -> None:
    upstream = FlakyPrices(prices={"ACME": 12.5, "INIT": 3.0})
    with TestClient(create_app(upstream)) as client:
        first = client.get("/quotes/ACME").json()
        assert client.get("/quotes/ACME").json() == first
        assert client.get("/quotes/INIT").json() == {"symbol": "INIT", "price": 3.0}
        assert upstream.calls == ["ACME", "INIT"]

        clock.advance(59)
        client.get("/quotes/ACME")
        assert upstream.calls == ["ACME", "INIT"]
        clock.advance(2)  # 61 s after the first answer: past cache_ttl=60
        assert client.get("/quotes/ACME").json() == first
        assert upstream.calls == ["ACME", "INIT", "ACME"]


def test_the_cache_holds_across_event_loops(clock: FakeClock) -> None:
    # Outside ``with TestClient(...)``, every request runs on a new event loop.
    upstream = FlakyPrices(failures=1)
    with closing(TestClient(create_app(upstream))) as client:
        assert client.get("/quotes/ACME").status_code == 200
        assert client.get("/quotes/ACME").status_code == 200
    assert upstream.calls == ["ACME", "ACME"]  # one failure, one success, then a hit


def test_all_attempts_failing_is_answered_with_503(clock: FakeClock) -> None:
    upstream = FlakyPrices(failures=3, error=TimeoutError)
    with TestClient(create_app(upstream)) as client:
        response = client.get("/quotes/ACME")
        assert response.status_code == 503
        assert response.json() == {"detail": "quote service unavailable", "attempts": 3}
        assert response.headers["retry-after"] == "30"
        assert upstream.calls == ["ACME"] * 3

        # Failures are never cached: once the upstream recovers, the route answers.
        assert client.get("/quotes/ACME").status_code == 200
        assert upstream.calls == ["ACME"] * 4


def test_an_unknown_symbol_is_a_404_without_retries(clock: FakeClock) -> None:
    upstream = FlakyPrices()
    with TestClient(create_app(upstream)) as client:
        response = client.get("/quotes/NOPE")
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown symbol"}
    assert upstream.calls == ["NOPE"]
    assert clock.sleeps == []


def test_errors_outside_retry_on_reach_fastapi_unwrapped(clock: FakeClock) -> None:
    upstream = FlakyPrices(failures=1, error=ValueError)
    with TestClient(create_app(upstream)) as client, pytest.raises(ValueError, match="reset"):
        client.get("/quotes/ACME")
    assert upstream.calls == ["ACME"]

    with TestClient(
        create_app(FlakyPrices(failures=1, error=KeyError)), raise_server_exceptions=False
    ) as client:
        assert client.get("/quotes/ACME").status_code == 500


def test_fastapi_sees_the_original_signature_through_opero() -> None:
    with closing(TestClient(create_app(FlakyPrices()))) as client:
        schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/quotes/{symbol}"]["get"]
    (parameter,) = operation["parameters"]
    assert parameter["name"] == "symbol"
    assert parameter["in"] == "path"
    assert parameter["schema"]["type"] == "string"
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Quote"}
