"""server_delay: the Retry-After a server asked for, from every source, never raising.

The client tests use real httpx, requests and aiohttp clients against a real
local server (``tests/http_stub.py``) that answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from typing import Any

import aiohttp
import httpx
import pytest
import requests
from multidict import CIMultiDict, CIMultiDictProxy

from http_stub import HTTPStub
from opero.core.retry_after import check_settings, server_delay
from opero.exceptions import ConfigurationError, ResultRejected
from opero.testing import FakeClock

#: A fixed wall time for dates: 2026-03-01T12:00:00Z.
NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc).timestamp()


def wall() -> float:
    return NOW


class WithAttribute(Exception):
    def __init__(self, value: object) -> None:
        super().__init__("refused")
        self.retry_after = value


class WithHeaders(Exception):
    """Shaped like aiohttp's ClientResponseError: headers on the error itself."""

    def __init__(self, headers: object) -> None:
        super().__init__("refused")
        self.headers = headers


class Response:
    def __init__(self, headers: object) -> None:
        self.headers = headers


class WithResponse(Exception):
    """Shaped like httpx's HTTPStatusError and requests' HTTPError."""

    def __init__(self, response: object) -> None:
        super().__init__("refused")
        self.response = response


def http_date(seconds_from_now: float) -> str:
    return formatdate(NOW + seconds_from_now, usegmt=True)


@pytest.fixture(scope="module")
def stub() -> Iterator[HTTPStub]:
    with HTTPStub() as server:
        yield server


# --- the retry_after attribute --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2.0),
        (0.25, 0.25),
        (0, 0.0),
        (timedelta(seconds=90), 90.0),
        (datetime.fromtimestamp(NOW + 7, tz=timezone.utc), 7.0),
        # A naive datetime is UTC.
        (datetime.fromtimestamp(NOW + 7, tz=timezone.utc).replace(tzinfo=None), 7.0),
        (datetime.fromtimestamp(NOW + 7, tz=timezone(timedelta(hours=5))), 7.0),
        # A moment already past: retry now.
        (datetime.fromtimestamp(NOW - 60, tz=timezone.utc), 0.0),
    ],
)
def test_the_attribute_gives_seconds_timedeltas_and_datetimes(
    value: object, expected: float
) -> None:
    assert server_delay(WithAttribute(value), wall=wall) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [-1, -0.5, math.inf, math.nan, True, "2", None, timedelta(seconds=-3), 10**400, object(), len],
)
def test_a_bad_attribute_is_no_delay(value: object) -> None:
    assert server_delay(WithAttribute(value), wall=wall) is None


def test_an_error_with_nothing_is_no_delay() -> None:
    assert server_delay(ValueError("x")) is None
    assert server_delay(WithResponse(None)) is None  # requests: an HTTPError without response
    assert server_delay(WithHeaders(None)) is None  # aiohttp: headers may be None


def test_a_hostile_error_is_no_delay() -> None:
    class Hostile(Exception):
        @property
        def retry_after(self) -> float:
            raise RuntimeError("boom")

    class HostileResponse(Exception):
        @property
        def response(self) -> object:  # httpx's RequestError.request raises like this
            raise RuntimeError("no response")

    assert server_delay(Hostile()) is None
    assert server_delay(HostileResponse()) is None


# --- the Retry-After header -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (http_date(30), 30.0),
        ("Sun, 01 Mar 2026 12:00:45 GMT", 45.0),
        (http_date(-30), 0.0),  # past: retry now
        (b"5", 5.0),
    ],
)
def test_the_header_gives_seconds_and_http_dates(value: str | bytes, expected: float) -> None:
    assert server_delay(WithHeaders({"Retry-After": value}), wall=wall) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["-1", "soon", "", "1e3", "inf", "nan", "+5", "Sun, 99 Foo", 5])
def test_a_garbage_header_is_no_delay(value: object) -> None:
    assert server_delay(WithHeaders({"Retry-After": value}), wall=wall) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "4"},
        {"RETRY-AFTER": "4"},
        (("Content-Type", "text/plain"), ("retry-After", "4")),
        [(b"retry-after", b"4")],
        CIMultiDictProxy(CIMultiDict([("Retry-After", "4")])),
    ],
    ids=["lower", "upper", "tuple-of-pairs", "bytes-pairs", "multidict"],
)
def test_the_header_name_is_matched_without_case(headers: object) -> None:
    assert server_delay(WithHeaders(headers)) == 4.0
    assert server_delay(WithResponse(Response(headers))) == 4.0


def test_headers_that_are_not_headers_are_no_delay() -> None:
    for headers in ("Retry-After: 4", b"x", 42, [("only-one",)], [("Retry-After", "4", "x")]):
        assert server_delay(WithHeaders(headers)) is None


def test_an_http_date_is_measured_against_the_fake_clocks_wall_time() -> None:
    with FakeClock(start=100.0) as clock:
        date = formatdate(clock.wall() + 7, usegmt=True)
        assert server_delay(WithHeaders({"Retry-After": date})) == pytest.approx(7.0)
        clock.advance(5)
        assert server_delay(WithHeaders({"Retry-After": date})) == pytest.approx(2.0)


# --- the user's callable ----------------------------------------------------------------


def test_the_callable_comes_first() -> None:
    error = WithAttribute(2)
    error.headers = {"Retry-After": "3"}  # type: ignore[attr-defined]
    assert server_delay(error, lambda e: 9.0) == 9.0
    assert server_delay(error) == 2.0  # the attribute before the header
    del error.retry_after
    assert server_delay(error) == 3.0


def test_the_callables_none_falls_through_to_the_other_sources() -> None:
    assert server_delay(WithAttribute(2), lambda e: None) == 2.0
    assert server_delay(ValueError(), lambda e: None) is None
    # A value it cannot mean is no delay from it, too.
    assert server_delay(WithAttribute(2), lambda e: -5) == 2.0  # type: ignore[arg-type, return-value]
    assert server_delay(ValueError(), lambda e: timedelta(seconds=4)) == 4.0  # type: ignore[arg-type, return-value]


def test_a_callable_that_raises_is_logged_not_propagated(caplog: pytest.LogCaptureFixture) -> None:
    def broken(error: BaseException) -> float:
        raise KeyError("sk-secret-key")

    with caplog.at_level(logging.WARNING, logger="opero"):
        assert server_delay(WithAttribute(2), broken) == 2.0
    [record] = caplog.records
    assert "KeyError" in record.getMessage()
    assert "sk-secret-key" not in record.getMessage()


# --- settings ---------------------------------------------------------------------------


def test_good_settings_pass() -> None:
    check_settings(None, None)
    check_settings(lambda e: 1.0, 0)
    check_settings(server_delay, 120.5)


@pytest.mark.parametrize(
    ("retry_after", "max_retry_after", "named"),
    [
        (5, None, "retry_after"),
        ("header", None, "retry_after"),
        (None, -1, "max_retry_after"),
        (None, "60", "max_retry_after"),
        (None, True, "max_retry_after"),
        (None, math.inf, "max_retry_after"),
        (None, math.nan, "max_retry_after"),
    ],
)
def test_bad_settings_name_the_parameter(
    retry_after: Any, max_retry_after: Any, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{named} must be"):
        check_settings(retry_after, max_retry_after)


def test_an_async_callable_is_refused() -> None:
    async def delay(error: BaseException) -> float:
        return 1.0

    with pytest.raises(ConfigurationError, match=r"^retry_after must be .*not async"):
        check_settings(delay, None)


# --- real clients against a real server ------------------------------------------------


def httpx_error(url: str) -> httpx.HTTPStatusError:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        httpx.get(url, timeout=5).raise_for_status()
    return caught.value


def requests_error(url: str) -> requests.HTTPError:
    with pytest.raises(requests.HTTPError) as caught:
        requests.get(url, timeout=5).raise_for_status()
    return caught.value


async def aiohttp_error(url: str) -> aiohttp.ClientResponseError:
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            async with session.get(url):
                pass
    return caught.value


async def httpx_async_error(url: str) -> httpx.HTTPStatusError:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    return caught.value


def test_httpx_and_requests_errors_carry_the_delay(stub: HTTPStub) -> None:
    for get in (httpx_error, requests_error):
        assert server_delay(get(stub.url("/status/429?retry_after=2"))) == 2.0
        assert server_delay(get(stub.url("/status/503?retry_after=120"))) == 120.0
        assert server_delay(get(stub.url("/status/429"))) is None
        assert server_delay(get(stub.url("/status/429?retry_after=soon"))) is None
        # An HTTP-date 30 s ahead by the real wall clock (whole seconds: 29 < d <= 30).
        dated = server_delay(get(stub.url("/status/429?retry_after_in=30")))
        assert dated is not None
        assert 25.0 < dated <= 30.0


@pytest.mark.asyncio
async def test_aiohttp_and_async_httpx_errors_carry_the_delay(stub: HTTPStub) -> None:
    for get in (aiohttp_error, httpx_async_error):
        assert server_delay(await get(stub.url("/status/429?retry_after=2"))) == 2.0
        assert server_delay(await get(stub.url("/status/429"))) is None
        dated = server_delay(await get(stub.url("/status/503?retry_after_in=30")))
        assert dated is not None
        assert 25.0 < dated <= 30.0


def test_a_rejected_response_carries_its_delay(stub: HTTPStub) -> None:
    # retry_if_result rejected the response itself: its header is read from it.
    rejected = httpx.get(stub.url("/status/429?retry_after=3"), timeout=5)
    assert server_delay(ResultRejected("rejected", rejected)) == 3.0
    assert server_delay(ResultRejected("rejected", requests.get(rejected.url, timeout=5))) == 3.0
    assert server_delay(ResultRejected("rejected", {"Retry-After": "3"})) is None  # not a response
    assert server_delay(ResultRejected("rejected", None)) is None
