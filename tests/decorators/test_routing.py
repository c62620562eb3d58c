"""Error routing (CONTRACT 26, 32): fallback_on moves to the next candidate, retry_on backs off.

Every case of issue 13's example, ``fallback_on=AuthError, retry_on=(ServerError,
RateLimited)``, on both shells, plus predicates and the errors that are never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from opero import AllFailedError, ConfigurationError, opero
from opero.testing import FakeClock
from shells import Shell


class AuthError(Exception):
    """A 401: this key is revoked; another key may work."""


class ServerError(Exception):
    """A 503: the upstream is down for everyone; back off."""

    def __init__(self, status: int = 503) -> None:
        super().__init__(f"status {status}")
        self.status = status


class RateLimited(Exception):
    """A 429 without a delay of its own."""


def upstream(
    script: dict[str, list[type[Exception] | None]],
) -> tuple[Callable[..., str], list[str]]:
    """A function of ``(item, api_key)`` that answers each key from its script, in turn.

    ``None`` in a key's script is a success; an exception class is raised.  A key
    whose script has run out succeeds.  Every call's key is recorded.
    """
    seen: list[str] = []

    def call(item: int, api_key: list[str]) -> str:
        key = api_key[0]
        seen.append(key)
        outcomes = script.get(key, [])
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome()
        return f"{item} via {key}"

    return call, seen


ROUTED = {"fallback_on": AuthError, "retry_on": (ServerError, RateLimited)}


def routed(shell: Shell, body: Callable[..., Any], **settings: Any) -> Callable[..., Any]:
    config: dict[str, Any] = {"retries": 2, "min_delay": 1.0, "arg_fallback": "api_key"}
    config.update(ROUTED)
    config.update(settings)
    return opero(**config)(shell.fn(body))


def test_401_moves_to_the_next_key_with_no_wait_and_no_retry(
    clock: FakeClock, shell: Shell
) -> None:
    body, seen = upstream({"a": [AuthError, AuthError]})
    fetch = routed(shell, body)
    assert shell.call(fetch, 1, ["a", "b"]) == "1 via b"
    assert seen == ["a", "b"]
    assert clock.sleeps == []
    stats = fetch.statistics()
    assert (stats.retries, stats.fallbacks) == (0, 1)


def test_every_key_401_is_all_failed_after_one_pass(clock: FakeClock, shell: Shell) -> None:
    body, seen = upstream({key: [AuthError] * 5 for key in "abc"})
    fetch = routed(shell, body)
    with pytest.raises(AllFailedError) as info:
        shell.call(fetch, 1, ["a", "b", "c"])
    assert seen == ["a", "b", "c"]
    assert clock.sleeps == []
    assert [type(e) for e in info.value.errors] == [AuthError] * 3
    assert isinstance(info.value.__cause__, AuthError)
    assert fetch.statistics().retries == 0


@pytest.mark.parametrize("error", [ServerError, RateLimited])
def test_503_ends_the_attempt_backs_off_and_retries_from_the_first_key(
    clock: FakeClock, shell: Shell, error: type[Exception]
) -> None:
    body, seen = upstream({"a": [error]})
    fetch = routed(shell, body)
    assert shell.call(fetch, 1, ["a", "b", "c"]) == "1 via a"
    assert seen == ["a", "a"]  # b and c never tried
    assert clock.sleeps == [1.0]
    stats = fetch.statistics()
    assert (stats.retries, stats.fallbacks) == (1, 0)


def test_a_401_after_a_503_goes_on_to_the_next_key(clock: FakeClock, shell: Shell) -> None:
    body, seen = upstream({"a": [ServerError, AuthError]})
    fetch = routed(shell, body)
    assert shell.call(fetch, 1, ["a", "b"]) == "1 via b"
    assert seen == ["a", "a", "b"]
    assert clock.sleeps == [1.0]


def test_last_key_401_ends_with_every_error_so_far(clock: FakeClock, shell: Shell) -> None:
    # attempt 1: a 503 (back off); attempt 2: a 401, b 401 (fallback_on only: give up)
    body, seen = upstream({"a": [ServerError, AuthError], "b": [AuthError]})
    fetch = routed(shell, body)
    with pytest.raises(AllFailedError) as info:
        shell.call(fetch, 1, ["a", "b"])
    assert seen == ["a", "a", "b"]
    assert [type(e) for e in info.value.errors] == [ServerError, AuthError, AuthError]
    assert clock.sleeps == [1.0]


def test_retries_used_up_on_503_is_all_failed(clock: FakeClock, shell: Shell) -> None:
    body, seen = upstream({"a": [ServerError] * 5})
    fetch = routed(shell, body)
    with pytest.raises(AllFailedError) as info:
        shell.call(fetch, 1, ["a", "b"])
    assert seen == ["a", "a", "a"]
    assert len(info.value.errors) == 3


def test_an_error_matching_neither_propagates_unwrapped(clock: FakeClock, shell: Shell) -> None:
    body, seen = upstream({"a": [KeyError]})
    fetch = routed(shell, body)
    with pytest.raises(KeyError):
        shell.call(fetch, 1, ["a", "b"])
    assert seen == ["a"]
    assert fetch.statistics().failures == 1


def test_predicates_route_by_the_errors_content(clock: FakeClock, shell: Shell) -> None:
    seen: list[tuple[str, int]] = []
    statuses = {"a": [401, 503, 401], "b": [503, 200]}

    def body(item: int, api_key: list[str]) -> str:
        key = api_key[0]
        status = statuses[key].pop(0)
        seen.append((key, status))
        if status != 200:
            raise ServerError(status)
        return key

    fetch = opero(
        retries=3,
        min_delay=2.0,
        arg_fallback="api_key",
        fallback_on=lambda e: getattr(e, "status", 0) == 401,
        retry_on=lambda e: getattr(e, "status", 0) >= 500,
    )(shell.fn(body))
    assert shell.call(fetch, 1, ["a", "b"]) == "b"
    # a 401: b at once; b 503: back off, again from a; a 503: back off; a 401: b; b 200
    assert seen == [("a", 401), ("b", 503), ("a", 503), ("a", 401), ("b", 200)]
    assert clock.sleeps == [2.0, 3.0]


def test_retry_on_predicate_without_fallback(clock: FakeClock, shell: Shell) -> None:
    calls: list[int] = []

    def body(status: int) -> int:
        calls.append(status)
        if len(calls) < 3:
            raise ServerError(status)
        return len(calls)

    fetch = opero(retries=5, min_delay=0.5, backoff_factor=1.0, retry_on=lambda e: True)(
        shell.fn(body)
    )
    assert shell.call(fetch, 503) == 3
    assert clock.sleeps == [0.5, 0.5]
    picky = opero(retries=5, retry_on=lambda e: getattr(e, "status", 0) >= 500)(shell.fn(body))
    calls.clear()
    with pytest.raises(ServerError):
        shell.call(picky, 404)
    assert calls == [404]


def test_fallback_on_defaults_to_retry_on(clock: FakeClock, shell: Shell) -> None:
    body, seen = upstream({"a": [ServerError], "b": [ServerError]})
    fetch = opero(retries=1, arg_fallback="api_key", retry_on=ServerError)(shell.fn(body))
    assert shell.call(fetch, 1, ["a", "b", "c"]) == "1 via c"
    assert seen == ["a", "b", "c"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
@pytest.mark.parametrize(
    "rule", [BaseException, (BaseException,), lambda e: True], ids=["class", "tuple", "predicate"]
)
def test_interrupts_are_never_retried_or_wrapped(
    clock: FakeClock, shell: Shell, interrupt: type[BaseException], rule: Any
) -> None:
    calls: list[str] = []

    def body(api_key: list[str]) -> str:
        calls.append(api_key[0])
        raise interrupt

    fetch = opero(retries=3, arg_fallback="api_key", retry_on=rule, fallback_on=rule)(
        shell.fn(body)
    )
    with pytest.raises(interrupt):
        shell.call(fetch, ["a", "b"])
    assert calls == ["a"]
    assert clock.sleeps == []


@pytest.mark.parametrize("rule", [BaseException, lambda e: True], ids=["class", "predicate"])
def test_cancelled_error_is_never_retried_or_wrapped(clock: FakeClock, rule: Any) -> None:
    calls: list[int] = []

    @opero(retries=3, retry_on=rule, retry_if_result=lambda r: False)
    async def body() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(body())
    assert calls == [1]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"fallback_on": 3, "arg_fallback": "k"}, "fallback_on"),
        ({"fallback_on": (), "arg_fallback": "k"}, "fallback_on"),
        ({"fallback_on": (KeyError, int), "arg_fallback": "k"}, "fallback_on"),
        ({"fallback_on": KeyError}, "arg_fallback"),
        ({"retry_on": "KeyError"}, "retry_on"),
        ({"retry_on": ValueError("x")}, "retry_on"),
        ({"retry_if_result": 5}, "retry_if_result"),
        ({"rate_limit_per": "second"}, "rate_limit_per"),
        ({"rate_limit_per": ["call"]}, "rate_limit_per"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": "5"}, "deadline"),
        ({"attempt_timeout": 0}, "attempt_timeout"),
        ({"attempt_timeout": float("inf")}, "attempt_timeout"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"retry_after": 5}, "retry_after"),
    ],
)
def test_bad_settings_fail_at_decoration(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        opero(**settings)
    with pytest.raises(ConfigurationError, match=named):

        @opero(**settings)
        def f(k: list[str] | None = None) -> None: ...


def test_async_predicates_are_refused_where_they_could_not_be_awaited() -> None:
    async def check(value: object) -> bool:
        return True

    with pytest.raises(ConfigurationError, match="retry_on"):
        opero(retry_on=check)
    with pytest.raises(ConfigurationError, match="fallback_on"):
        opero(fallback_on=check, arg_fallback="k")
    with pytest.raises(ConfigurationError, match="retry_if_result"):

        @opero(retry_if_result=check)
        def sync(x: int) -> int:
            return x

    async def never(value: object) -> bool:
        return False

    @opero(retry_if_result=never)
    async def fine(x: int) -> int:
        return x

    assert asyncio.run(fine(1)) == 1  # an async check suits an async function
