"""Retry-After wired into the engine (CONTRACT 28): the next wait, giving up, pausing the scope.

Where the delay is read from is ``tests/core/test_retry_after.py``; here it is what
the call does with it, on the fake clock, on both shells.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from opero import AllFailedError, opero
from opero.testing import FakeClock
from shells import Shell


class RateLimited(Exception):
    """A 429 that says how long to wait."""

    def __init__(self, retry_after: Any) -> None:
        super().__init__("429")
        self.retry_after = retry_after


class Headers:
    def __init__(self, **headers: str) -> None:
        self.headers = headers


class HTTPStatusError(Exception):
    """Shaped like httpx's: the response (and its headers) on ``.response``."""

    def __init__(self, **headers: str) -> None:
        super().__init__("429 Too Many Requests")
        self.response = Headers(**headers)


def flaky(clock: FakeClock, *errors: BaseException) -> tuple[Any, list[float]]:
    """Raises ``errors`` in turn, then succeeds; records each call's clock time."""
    pending = list(errors)
    calls: list[float] = []

    def call() -> str:
        calls.append(clock.now())
        if pending:
            raise pending.pop(0)
        return "ok"

    return call, calls


def test_the_next_wait_is_the_servers_delay_when_longer(clock: FakeClock, shell: Shell) -> None:
    body, calls = flaky(clock, RateLimited(2))
    f = opero(retries=2, min_delay=0.1)(shell.fn(body))
    assert shell.call(f) == "ok"
    assert clock.sleeps == [2.0]
    assert calls == [1000.0, 1002.0]


def test_the_backoff_wins_when_longer(clock: FakeClock, shell: Shell) -> None:
    body, _ = flaky(clock, RateLimited(2))
    f = opero(retries=2, min_delay=5.0)(shell.fn(body))
    assert shell.call(f) == "ok"
    assert clock.sleeps == [5.0]


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_a_retry_after_header_in_seconds_or_as_a_date(
    clock: FakeClock, shell: Shell, form: str
) -> None:
    when = datetime.fromtimestamp(clock.wall() + 7, tz=timezone.utc)
    value = "7" if form == "seconds" else format_datetime(when, usegmt=True)
    body, calls = flaky(clock, HTTPStatusError(**{"Retry-After": value}))
    f = opero(retries=1)(shell.fn(body))
    assert shell.call(f) == "ok"
    assert calls[1] - calls[0] == pytest.approx(7.0, abs=1.0)  # an HTTP date has 1-s steps
    assert calls[1] - calls[0] >= 6.0


def test_a_users_retry_after_callable(clock: FakeClock, shell: Shell) -> None:
    body, _ = flaky(clock, ValueError("quota"), ValueError("quota"))
    asked: list[type[BaseException]] = []

    def read(error: BaseException) -> float | None:
        asked.append(type(error))
        return 3.0

    f = opero(retries=2, retry_after=read)(shell.fn(body))
    assert shell.call(f) == "ok"
    assert clock.sleeps == [3.0, 3.0]
    assert asked == [ValueError, ValueError]


def test_a_delay_above_max_delay_gives_up_at_once(clock: FakeClock, shell: Shell) -> None:
    body, calls = flaky(clock, RateLimited(60))
    f = opero(retries=3, max_delay=30)(shell.fn(body))
    with pytest.raises(AllFailedError) as info:
        shell.call(f)
    assert calls == [1000.0]
    assert clock.sleeps == []
    assert isinstance(info.value.errors[0], RateLimited)


def test_max_retry_after_allows_longer_delays_never_cut_short(
    clock: FakeClock, shell: Shell
) -> None:
    body, calls = flaky(clock, RateLimited(60))
    f = opero(retries=3, max_delay=30, max_retry_after=120)(shell.fn(body))
    assert shell.call(f) == "ok"
    assert clock.sleeps == [60.0]
    longer, calls = flaky(clock, RateLimited(200))
    g = opero(retries=3, max_delay=30, max_retry_after=120)(shell.fn(longer))
    with pytest.raises(AllFailedError):
        shell.call(g)
    assert len(calls) == 1


@pytest.mark.parametrize("limited", [False, True], ids=["no-rate-limit", "rate-limited"])
def test_a_429_pauses_every_caller_until_the_delay_has_passed(
    clock: FakeClock, shell: Shell, limited: bool
) -> None:
    calls: list[tuple[int, float]] = []

    def body(i: int) -> int:
        calls.append((i, clock.now()))
        if i == 0:
            raise RateLimited(7)
        return i

    settings: dict[str, Any] = {"retries": 0}
    if limited:
        settings["rate_limit"] = 1000
        settings["rate_limit_burst"] = 100
    f = opero(**settings)(shell.fn(body))
    with pytest.raises(AllFailedError):
        shell.call(f, 0)  # the 429, at t = 1000
    outcomes = shell.concurrently(50, f, 1)
    assert outcomes == [1] * 50
    starts = [t for i, t in calls if i == 1]
    assert len(starts) == 50
    assert min(starts) >= 1007.0


def test_the_429d_caller_itself_comes_back_after_the_delay(clock: FakeClock) -> None:
    calls: list[float] = []

    @opero(retries=1)
    async def f() -> str:
        calls.append(clock.now())
        if len(calls) == 1:
            raise RateLimited(7)
        return "ok"

    async def main() -> list[Any]:
        first = asyncio.ensure_future(f())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        others = [asyncio.ensure_future(f()) for _ in range(50)]
        return await asyncio.gather(first, *others, return_exceptions=True)

    assert asyncio.run(main())[0] == "ok"
    assert calls[0] == 1000.0
    assert min(calls[1:]) >= 1007.0


def test_no_pause_across_fallback_candidates(clock: FakeClock, shell: Shell) -> None:
    calls: list[float] = []

    def body(key: list[str]) -> str:
        calls.append(clock.now())
        if len(calls) == 1:
            raise RateLimited(7)
        return key[0]

    f = opero(retries=0, arg_fallback="key")(shell.fn(body))
    with pytest.raises(AllFailedError):
        shell.call(f, ["a"])  # this key's 429 says nothing of another key
    assert shell.call(f, ["b"]) == "b"
    assert calls == [1000.0, 1000.0]
