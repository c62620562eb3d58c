"""Every bad setting is a ConfigurationError at decoration time, naming the parameter."""

from __future__ import annotations

import math
from typing import Any

import pytest

from opero import ConfigurationError, opero


def sample(x: int, keys: list[str] | None = None) -> int:
    return x


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"retries": True}, "retries"),
        ({"min_delay": -0.1}, "min_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"min_delay": math.nan}, "min_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"min_delay": 5, "max_delay": 1}, "max_delay"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"backoff_factor": "2"}, "backoff_factor"),
        ({"jitter": "yes"}, "jitter"),
        ({"retry_on": ValueError("x")}, "retry_on"),
        ({"retry_on": (ValueError, 3)}, "retry_on"),
        ({"retry_on": ()}, "retry_on"),
        ({"retry_on": int}, "retry_on"),
        ({"wait": 3}, "wait"),
        ({"fallback_delay": -1, "arg_fallback": "keys"}, "fallback_delay"),
        ({"arg_fallback": "nope"}, "arg_fallback"),
        ({"arg_fallback": ""}, "arg_fallback"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": -5}, "rate_limit"),
        ({"rate_limit": math.nan}, "rate_limit"),
        ({"rate_limit": 1, "rate_limit_scope": "per_thing"}, "rate_limit_scope"),
        ({"rate_limit": 1, "rate_limit_scope": ""}, "rate_limit_scope"),
        ({"rate_limit": 1, "rate_limit_burst": 0}, "rate_limit_burst"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        opero(**kwargs)(sample)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_retry_settings_fail_before_a_function_is_given() -> None:
    with pytest.raises(ConfigurationError, match="retries"):
        opero(retries=-1)


def test_generator_functions_are_rejected() -> None:
    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    for func in (gen, agen):
        with pytest.raises(ConfigurationError, match="generator"):
            opero()(func)


def test_non_callable_is_rejected() -> None:
    with pytest.raises(ConfigurationError):
        opero()(42)  # type: ignore[call-overload]


def test_documented_config_dict_style_works() -> None:
    api_config = {"retries": 3, "cache": True, "cache_ttl": 300, "rate_limit": 10.0}

    @opero(**api_config)  # type: ignore[arg-type]
    def api_function(x: int) -> int:
        return x

    assert api_function(2) == 2
