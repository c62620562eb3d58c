"""The flaky upstream (``tests/http_stub.py``) answers as the HTTP APIs page and tests rely on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from http_stub import HTTPStub


@pytest.fixture
def stub() -> Iterator[HTTPStub]:
    with HTTPStub() as server:
        yield server


def test_status_with_retry_after(stub: HTTPStub) -> None:
    response = httpx.get(stub.url("/status/429?retry_after=2&reset_after=4"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.headers["X-RateLimit-Reset-After"] == "4"
    assert "Retry-After" not in httpx.get(stub.url("/status/503")).headers
    assert (
        httpx.get(stub.url("/status/429?retry_after_in=30")).headers["Retry-After"].endswith(" GMT")
    )


def test_flaky_fails_n_times_per_key_then_succeeds(stub: HTTPStub) -> None:
    codes = [httpx.get(stub.url("/flaky?fail=2&status=429&key=a")).status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    assert httpx.get(stub.url("/flaky?fail=2&key=b")).status_code == 503  # a key of its own
    assert stub.hits("/flaky") == 4
    stub.upstream.reset()
    assert httpx.get(stub.url("/flaky?fail=2&status=429&key=a")).status_code == 429


def test_keys(stub: HTTPStub) -> None:
    assert httpx.get(stub.url("/keys/good-key")).json() == {"authorized": True}
    assert httpx.get(stub.url("/keys/revoked-key")).status_code == 401
    bearer = {"Authorization": "Bearer spare-key"}
    assert httpx.get(stub.url("/private"), headers=bearer).status_code == 200
    assert httpx.get(stub.url("/private")).status_code == 401


def test_a_hanging_request_answers_once_the_server_stops() -> None:
    answered: list[float] = []
    with HTTPStub() as server:
        url = server.url("/hang?seconds=30")

        def hang() -> None:
            httpx.get(url, timeout=60)
            answered.append(time.monotonic())

        thread = threading.Thread(target=hang)
        thread.start()
        while server.hits("/hang") == 0:
            time.sleep(0.01)
        stopped = time.monotonic()
    thread.join(timeout=20)
    assert answered
    assert answered[0] - stopped < 10  # not the 30 s it asked for


def test_a_short_hang_answers_after_its_time(stub: HTTPStub) -> None:
    begun = time.monotonic()
    assert httpx.get(stub.url("/hang?seconds=0.2")).json() == {"slept": 0.2}
    assert time.monotonic() - begun >= 0.2
