"""@opero parameter fallback on both shells: candidate order, positions, fallback inside retries."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from opero import AllFailedError, ConfigurationError, opero
from opero.testing import FakeClock
from shells import Shell


def recorder(fail_on: set[str]) -> tuple[Callable[..., str], list[str]]:
    """A function that records the candidate it saw and fails for those in ``fail_on``."""
    seen: list[str] = []

    def call(item: int, api_key: list[str], *, suffix: str = "") -> str:
        assert isinstance(api_key, list)
        assert len(api_key) == 1
        seen.append(api_key[0])
        if api_key[0] in fail_on:
            raise ConnectionError(f"rejected candidate #{len(seen)}")
        return f"{item}:{api_key[0]}{suffix}"

    return call, seen


def test_first_working_candidate_wins(clock: FakeClock, shell: Shell) -> None:
    call, seen = recorder({"a", "b"})
    wrapped = opero(retries=0, arg_fallback="api_key")(shell.fn(call))
    assert shell.call(wrapped, 1, ["a", "b", "c", "d"]) == "1:c"
    assert seen == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((7, ["bad", "good"]), {}),
        ((7,), {"api_key": ["bad", "good"]}),
        ((), {"item": 7, "api_key": ("bad", "good")}),
        ((7, ["bad", "good"]), {"suffix": "!"}),
    ],
    ids=["positional", "keyword", "tuple-by-keyword", "with-kw-only"],
)
def test_candidates_given_positionally_or_by_keyword(
    clock: FakeClock, shell: Shell, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    call, seen = recorder({"bad"})
    wrapped = opero(retries=0, arg_fallback="api_key")(shell.fn(call))
    assert shell.call(wrapped, *args, **kwargs).startswith("7:good")
    assert seen == ["bad", "good"]


def test_candidates_from_default(clock: FakeClock, shell: Shell) -> None:
    seen: list[str] = []

    @opero(retries=1, arg_fallback="endpoint")
    @shell.fn
    def call(endpoint: list[str] = ["primary", "backup"]) -> str:  # noqa: B006 - documented style
        seen.append(endpoint[0])
        if endpoint[0] == "primary":
            raise ConnectionError("Primary failed")
        return f"Success with {endpoint[0]}"

    assert shell.call(call) == "Success with backup"
    assert seen == ["primary", "backup"]


def test_keyword_only_and_positional_only_parameters(clock: FakeClock, shell: Shell) -> None:
    @opero(retries=0, arg_fallback="keys")
    @shell.fn
    def kw_only(x: int, *, keys: list[str]) -> str:
        if keys[0] == "x":
            raise ValueError("no")
        return keys[0]

    assert shell.call(kw_only, 1, keys=["x", "y"]) == "y"

    @opero(retries=0, arg_fallback="keys")
    @shell.fn
    def pos_only(x: int = 0, keys: list[str] = ["x", "z"], /) -> str:  # noqa: B006
        if keys[0] == "x":
            raise ValueError("no")
        return f"{x}{keys[0]}"

    assert shell.call(pos_only) == "0z"
    assert shell.call(pos_only, 5) == "5z"
    assert shell.call(pos_only, 5, ["x", "w"]) == "5w"


def test_not_a_list_passes_through_unchanged(clock: FakeClock, shell: Shell) -> None:
    seen: list[object] = []

    @opero(retries=0, arg_fallback="key")
    @shell.fn
    def call(key: object = None) -> object:
        seen.append(key)
        return key

    assert shell.call(call, "single-key") == "single-key"
    assert shell.call(call, None) is None
    assert shell.call(call, 42) == 42
    assert seen == ["single-key", None, 42]


def test_empty_candidate_list_is_a_configuration_error_at_call_time(
    clock: FakeClock, shell: Shell
) -> None:
    calls = 0

    @opero(retries=2, arg_fallback="key")
    @shell.fn
    def call(key: list[str]) -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(ConfigurationError, match="'key'"):
        shell.call(call, [])
    assert calls == 0


def test_unknown_parameter_is_rejected_at_decoration_time(shell: Shell) -> None:
    def call(api_key: list[str]) -> None: ...

    with pytest.raises(ConfigurationError, match="apikey") as info:
        opero(arg_fallback="apikey")(shell.fn(call))
    assert "api_key" in str(info.value)  # lists the real parameters
    assert isinstance(info.value, ValueError)


def test_star_args_parameter_is_rejected(shell: Shell) -> None:
    def call(*keys: str) -> None: ...

    with pytest.raises(ConfigurationError, match="keys"):
        opero(arg_fallback="keys")(shell.fn(call))


def test_fallback_runs_inside_each_retry_attempt(clock: FakeClock, shell: Shell) -> None:
    call, seen = recorder({"a", "b", "c"})
    wrapped = opero(
        retries=2, min_delay=1, backoff_factor=2, arg_fallback="api_key", fallback_delay=0.25
    )(shell.fn(call))
    with pytest.raises(AllFailedError) as info:
        shell.call(wrapped, 1, ["a", "b", "c"])
    assert seen == ["a", "b", "c"] * 3
    assert info.value.attempt_count == 9
    assert [str(e) for e in info.value.errors] == [f"rejected candidate #{n}" for n in range(1, 10)]
    # pauses: between candidates 0.25, between attempts the backoff
    assert clock.sleeps == [0.25, 0.25, 1.0, 0.25, 0.25, 2.0, 0.25, 0.25]


def test_retry_restarts_from_first_candidate(clock: FakeClock, shell: Shell) -> None:
    attempts: list[str] = []
    outage = {"a": 1}  # candidate "a" fails once only

    @opero(retries=2, arg_fallback="key")
    @shell.fn
    def call(key: list[str]) -> str:
        attempts.append(key[0])
        if key[0] == "b":
            raise ConnectionError("b is always down")
        if outage["a"] > 0:
            outage["a"] -= 1
            raise ConnectionError("a blipped")
        return key[0]

    assert shell.call(call, ["a", "b"]) == "a"
    assert attempts == ["a", "b", "a"]
    stats = call.statistics()
    assert (stats.attempts, stats.retries, stats.fallbacks) == (3, 1, 1)


def test_caller_list_is_not_mutated(clock: FakeClock, shell: Shell) -> None:
    call, _ = recorder({"a"})
    wrapped = opero(retries=0, arg_fallback="api_key")(shell.fn(call))
    keys = ["a", "b"]
    shell.call(wrapped, 1, keys)
    assert keys == ["a", "b"]


def test_non_retryable_error_stops_fallback(clock: FakeClock, shell: Shell) -> None:
    seen: list[str] = []

    @opero(retries=2, arg_fallback="key", retry_on=ConnectionError)
    @shell.fn
    def call(key: list[str]) -> None:
        seen.append(key[0])
        raise PermissionError("forbidden")

    with pytest.raises(PermissionError):
        shell.call(call, ["a", "b"])
    assert seen == ["a"]


def test_fallback_with_pauses_between_candidates(clock: FakeClock, shell: Shell) -> None:
    seen: list[str] = []

    @opero(retries=1, arg_fallback="user_agent", fallback_delay=0.5)
    @shell.fn
    def fetch(url: str, user_agent: list[str] | None = None) -> Generator[None, None, str]:
        assert user_agent is not None
        seen.append(user_agent[0])
        yield
        if user_agent[0] != "third":
            raise ConnectionError("blocked")
        return f"{url} as {user_agent[0]}"

    assert shell.call(fetch, "u", user_agent=["first", "second", "third"]) == "u as third"
    assert seen == ["first", "second", "third"]
    assert clock.sleeps == [0.5, 0.5]
