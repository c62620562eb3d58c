"""The new retry settings in @opmap, every local mode: the same engine, item by item.

Routing, ``retry_if_result`` and ``deadline`` reach each item through the settings
pass-through; process workers rebuild the same pipeline from them.  The mapped
functions live at module level so process workers import them by reference.
"""

from __future__ import annotations

from typing import Any

import pytest
from opmap_helpers import MODES, pick, run

from opero import AllFailedError, ConfigurationError, DeadlineExceeded, ResultRejected, opmap
from opero.utils.introspection import get_opero_info


class Revoked(Exception):
    """This key no longer works; the next one may."""


def call_with_key(x: int, key: list[str]) -> str:
    if key[0] == "revoked":
        raise Revoked("401")
    if key[0] == "broken":
        raise KeyError("no such route")
    return f"{x}:{key[0]}"


async def acall_with_key(x: int, key: list[str]) -> str:
    return call_with_key(x, key)


def odd_negative(x: int) -> int:
    return -x if x % 2 else x


async def aodd_negative(x: int) -> int:
    return odd_negative(x)


def negative(result: int) -> bool:
    return result < 0


def always_down(x: int) -> int:
    raise ConnectionError("down")


async def aalways_down(x: int) -> int:
    raise ConnectionError("down")


@pytest.mark.parametrize("mode", MODES)
def test_error_routing_per_item(mode: str) -> None:
    mapped = opmap(
        mode=mode,
        workers=2,
        progress=False,
        retries=2,
        min_delay=0,
        arg_fallback="key",
        fallback_on=Revoked,
        retry_on=ConnectionError,
    )(pick(mode, call_with_key, acall_with_key))
    assert run(mapped, range(4), ["revoked", "good"]) == [f"{x}:good" for x in range(4)]
    every_key_revoked = run(mapped, range(2), ["revoked", "revoked"])
    assert all(type(e) is AllFailedError for e in every_key_revoked)
    assert [len(e.errors) for e in every_key_revoked] == [2, 2]  # one pass, no retry
    unrouted = run(mapped, range(2), ["broken", "good"])
    assert all(type(e) is KeyError for e in unrouted)  # neither setting: unwrapped


@pytest.mark.parametrize("mode", MODES)
def test_retry_if_result_per_item(mode: str) -> None:
    mapped = opmap(
        mode=mode, workers=2, progress=False, retries=1, min_delay=0, retry_if_result=negative
    )(pick(mode, odd_negative, aodd_negative))
    entries = run(mapped, range(4))
    assert entries[0] == 0
    assert entries[2] == 2
    for x in (1, 3):
        error = entries[x]
        assert type(error) is AllFailedError
        assert [type(e) for e in error.errors] == [ResultRejected, ResultRejected]
        assert [e.result for e in error.errors] == [-x, -x]


@pytest.mark.parametrize("mode", MODES)
def test_deadline_per_item(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False, retries=5, min_delay=10, deadline=1)(
        pick(mode, always_down, aalways_down)
    )
    entries = run(mapped, range(3))
    assert all(type(e) is DeadlineExceeded for e in entries)  # the 10 s backoff never started
    assert all(isinstance(e, TimeoutError) for e in entries)
    assert [len(e.errors) for e in entries] == [1, 1, 1]


def test_new_settings_are_introspected_and_checked() -> None:
    mapped = opmap(
        progress=False,
        arg_fallback="key",
        fallback_on=(Revoked,),
        retry_if_result=negative,
        deadline=5,
        attempt_timeout=2,
        rate_limit_per="call",
        max_retry_after=60,
    )(call_with_key)
    config: dict[str, Any] = get_opero_info(mapped)["configuration"]
    assert config["fallback_on"] == ("Revoked",)
    assert config["retry_if_result"] == "negative"
    assert (config["deadline"], config["attempt_timeout"]) == (5, 2)
    assert (config["rate_limit_per"], config["max_retry_after"]) == ("call", 60)
    with pytest.raises(ConfigurationError, match="rate_limit_per"):
        opmap(rate_limit_per="item")
    with pytest.raises(ConfigurationError, match="fallback_on"):
        opmap(fallback_on=42, arg_fallback="key")
