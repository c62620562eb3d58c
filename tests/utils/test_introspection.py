"""get_opero_info and analyze_function: configuration, layers and statistics."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import tenacity

from opero import AllFailedError, opero
from opero.testing import FakeClock
from opero.utils.introspection import analyze_function, get_opero_info

INFO_KEYS = {
    "function_name",
    "is_opero_decorated",
    "is_opmap_decorated",
    "configuration",
    "layers",
    "statistics",
    "cache",
    "candidates",
    "circuit_breaker",
}

STAT_KEYS = {
    "calls",
    "attempts",
    "retries",
    "fallbacks",
    "failures",
    "cache_hits",
    "cache_misses",
    "cache_errors",
    "waited",
    "candidates",
    "breaker",
}


def report_retry(error: BaseException, attempt: int) -> None:
    """An on_retry callback (never called in these tests)."""


def plain(x: int) -> int:
    """Not decorated."""
    return x


def test_info_of_a_plain_function() -> None:
    info = get_opero_info(plain)
    assert info == {
        "function_name": "plain",
        "is_opero_decorated": False,
        "is_opmap_decorated": False,
        "configuration": {},
        "layers": [],
        "statistics": None,
        "cache": None,
        "candidates": [],
        "circuit_breaker": None,
    }


def test_info_of_a_fully_decorated_function() -> None:
    @opero(
        cache=True,
        cache_ttl=60,
        rate_limit=5,
        retries=2,
        arg_fallback="key",
        on_retry=report_retry,
        retry_on=(ConnectionError, TimeoutError),
    )
    def fetch(item: str, key: list[str] = ["a", "b"]) -> str:  # noqa: B006
        return item

    info = get_opero_info(fetch)
    assert set(info) == INFO_KEYS
    assert info["function_name"] == "fetch"
    assert info["is_opero_decorated"] is True
    assert info["is_opmap_decorated"] is False
    assert info["layers"] == ["cache", "rate_limit", "retry", "fallback"]
    config = info["configuration"]
    assert config["retries"] == 2
    assert config["cache"] is True
    assert config["cache_ttl"] == 60
    assert config["rate_limit"] == 5
    assert config["rate_limit_scope"] == "per_function"
    assert config["arg_fallback"] == "key"
    assert config["on_retry"] == "report_retry"  # by qualname, not the function object
    assert config["on_success"] is None
    assert config["retry_on"] == ("ConnectionError", "TimeoutError")
    assert not any(callable(value) for value in config.values())
    assert set(info["statistics"]) == STAT_KEYS
    assert info["statistics"]["calls"] == 0


@pytest.mark.parametrize(
    ("kwargs", "layers"),
    [
        ({}, ["retry"]),
        ({"cache": True}, ["cache", "retry"]),
        ({"rate_limit": 2}, ["rate_limit", "retry"]),
        ({"arg_fallback": "key"}, ["retry", "fallback"]),
        ({"cache": True, "arg_fallback": "key"}, ["cache", "retry", "fallback"]),
    ],
)
def test_layers_are_listed_outermost_first(kwargs: dict[str, Any], layers: list[str]) -> None:
    def fetch(key: list[str]) -> str:
        return key[0]

    assert get_opero_info(opero(**kwargs)(fetch))["layers"] == layers


def test_callables_in_the_configuration_are_named() -> None:
    class Handler:
        def on_success(self, result: object) -> None:
            """A bound method as callback."""

    @opero(
        wait=tenacity.wait_fixed(1),
        cache=True,
        cache_key=lambda func, *args, **kwargs: args,
        on_success=Handler().on_success,
        on_cache_hit=lambda: None,
    )
    def target() -> None:
        """Decorated."""

    config = get_opero_info(target)["configuration"]
    assert config["wait"] == "wait_fixed"
    assert config["cache_key"].endswith("<lambda>")
    assert config["on_success"].endswith("Handler.on_success")
    assert config["on_cache_hit"].endswith("<lambda>")
    assert config["retry_on"] == "Exception"


def test_info_of_an_async_function() -> None:
    @opero(retries=1)
    async def fetch() -> int:
        return 1

    assert asyncio.run(fetch()) == 1
    info = get_opero_info(fetch)
    assert info["is_opero_decorated"] is True
    assert info["statistics"]["calls"] == 1
    assert info["statistics"]["attempts"] == 1


def test_statistics_after_a_mix_of_calls(clock: FakeClock) -> None:
    computed: list[tuple[int, str]] = []

    @opero(cache=True, retries=1, min_delay=2, arg_fallback="key", fallback_delay=0.5)
    def fetch(x: int, key: list[str] = ["bad", "good"]) -> int:  # noqa: B006
        computed.append((x, key[0]))
        if key[0] == "bad":
            raise ConnectionError("down")
        return x * 10

    assert fetch(1) == 10  # "bad" fails, fallback to "good": 2 attempts, 0.5 s pause
    assert fetch(1) == 10  # cache hit
    assert fetch(x=1) == 10  # same key by keyword: cache hit
    assert fetch(2) == 20  # miss: fallback again

    flaky_calls = 0

    @opero(retries=3, min_delay=1, backoff_factor=2)
    def flaky() -> str:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls < 3:
            raise TimeoutError("slow")
        return "ok"

    assert flaky() == "ok"  # 2 retries: waits 1 + 2 s

    assert computed == [(1, "bad"), (1, "good"), (2, "bad"), (2, "good")]
    assert get_opero_info(fetch)["statistics"] == {
        "calls": 4,
        "attempts": 4,
        "retries": 0,
        "fallbacks": 2,
        "failures": 0,
        "cache_hits": 2,
        "cache_misses": 2,
        "cache_errors": 0,
        "waited": 1.0,
        "candidates": [],
        "breaker": None,
    }
    assert get_opero_info(flaky)["statistics"] == {
        "calls": 1,
        "attempts": 3,
        "retries": 2,
        "fallbacks": 0,
        "failures": 0,
        "cache_hits": 0,
        "cache_misses": 0,
        "cache_errors": 0,
        "waited": 3.0,
        "candidates": [],
        "breaker": None,
    }


def test_statistics_count_giving_up_and_non_retryable_errors(clock: FakeClock) -> None:
    @opero(retries=2, min_delay=1, backoff_factor=1, arg_fallback="key", retry_on=OSError)
    def call(kind: str, key: list[str] = ["k1", "k2"]) -> None:  # noqa: B006
        if kind == "retryable":
            raise ConnectionError(kind)
        raise LookupError(kind)

    with pytest.raises(AllFailedError) as info:
        call("retryable")
    assert info.value.attempt_count == 6  # 3 attempts x 2 candidates
    with pytest.raises(LookupError):
        call("fatal")

    stats = call.statistics()
    assert stats.as_dict() == {
        "calls": 2,
        "attempts": 7,
        "retries": 2,
        "fallbacks": 3,
        "failures": 2,
        "cache_hits": 0,
        "cache_misses": 0,
        "cache_errors": 0,
        "waited": 2.0,
        "candidates": (),
        "breaker": None,
    }


def test_analyze_a_plain_function() -> None:
    assert analyze_function(plain) == "Function 'plain' is not decorated with Opero."


def test_analyze_a_decorated_function(clock: FakeClock) -> None:
    namespace = f"ns-{uuid.uuid4().hex}"

    @opero(
        retries=2,
        min_delay=0.5,
        backoff_factor=2,
        max_delay=8,
        jitter=True,
        cache=True,
        cache_ttl=300,
        cache_namespace=namespace,
        rate_limit=4,
        arg_fallback="key",
    )
    def fetch(item: str, key: list[str] = ["a"]) -> str:  # noqa: B006
        return item

    assert fetch("x") == "x"
    assert fetch("x") == "x"
    report = analyze_function(fetch)
    lines = report.splitlines()
    assert lines[0] == "Analysis of 'fetch':"
    assert "Retries: 2 (up to 3 attempts)" in report
    assert "Backoff: 2x exponential, 0.5s to 8s, with jitter" in report
    assert f"Caching: memory backend, TTL: 300, namespace: {namespace}" in report
    assert "Rate limit: 4/sec (per_function)" in report
    assert "Fallback parameter: key" in report
    layer_lines = [line.strip() for line in lines if line.startswith("    - ")]
    assert layer_lines[-4:] == ["- cache", "- rate_limit", "- retry", "- fallback"]
    assert lines[-1].strip() == (
        "Statistics: 2 calls, 1 attempts, 0 retries, 0 fallbacks, 1 cache hits, "
        "0 failures, 0.000s waited"
    )


def test_analyze_a_minimal_decorated_function_shows_only_its_layers() -> None:
    @opero
    def ping() -> str:
        return "pong"

    report = analyze_function(ping)
    assert "Retries: 3 (up to 4 attempts)" in report
    assert "Backoff: 1.5x exponential, 0.1s to 30.0s" in report
    assert "with jitter" not in report
    assert "Caching" not in report
    assert "Rate limit" not in report
    assert "Fallback parameter" not in report


def test_analyze_shows_a_tenacity_strategy_by_name() -> None:
    @opero(wait=tenacity.wait_exponential(multiplier=1, max=10))
    def ping() -> str:
        return "pong"

    assert "Backoff: tenacity strategy wait_exponential" in analyze_function(ping)


def test_cache_stats_and_secret_in_info(tmp_path: Path) -> None:
    @opero(
        cache=True,
        cache_backend="sqlite",
        cache_backend_config={"path": str(tmp_path / "c.sqlite3")},
        cache_secret="hunter2-secret",
    )
    def double(x: int) -> int:
        return 2 * x

    double(1)
    double(2)
    info = get_opero_info(double)
    assert info["cache"]["backend"] == "sqlite"
    assert info["cache"]["entries"] == 2
    assert info["configuration"]["cache_secret"] == "<set>"
    assert "hunter2" not in repr(info)
    plain = get_opero_info(opero(cache=True)(lambda x: x))
    assert plain["cache"] == {"backend": "memory", "entries": 0, "namespace": "opero"}
