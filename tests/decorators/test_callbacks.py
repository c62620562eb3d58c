"""Callbacks: both arities, async callbacks, and callbacks that raise."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from opero import AllFailedError, ConfigurationError, opero
from opero.testing import FakeClock


def failing_then(value: Any, failures: int):  # type: ignore[no-untyped-def]
    state = {"left": failures}

    def call(x: int = 0) -> Any:
        if state["left"] > 0:
            state["left"] -= 1
            raise ConnectionError(f"left {state['left']}")
        return value

    return call


def test_callbacks_with_arguments(clock: FakeClock) -> None:
    events: list[tuple[Any, ...]] = []
    wrapped = opero(
        retries=3,
        cache=True,
        on_retry=lambda e, attempt: events.append(("retry", str(e), attempt)),
        on_success=lambda result: events.append(("success", result)),
        on_failure=lambda e: events.append(("failure", type(e).__name__)),
        on_cache_hit=lambda: events.append(("hit",)),
    )(failing_then("v", 2))
    assert wrapped(1) == "v"
    assert wrapped(1) == "v"
    assert events == [
        ("retry", "left 1", 1),
        ("retry", "left 0", 2),
        ("success", "v"),
        ("hit",),
    ]


def test_callbacks_without_arguments(clock: FakeClock) -> None:
    counts = {"retry": 0, "success": 0, "failure": 0}

    def on_retry() -> None:
        counts["retry"] += 1

    def on_success() -> None:
        counts["success"] += 1

    def on_failure() -> None:
        counts["failure"] += 1

    ok = opero(retries=2, on_retry=on_retry, on_success=on_success, on_failure=on_failure)(
        failing_then(1, 1)
    )
    bad = opero(retries=1, on_retry=on_retry, on_success=on_success, on_failure=on_failure)(
        failing_then(1, 10)
    )
    assert ok() == 1
    with pytest.raises(AllFailedError):
        bad()
    assert counts == {"retry": 2, "success": 1, "failure": 1}


def test_on_failure_gets_all_failed_error_or_the_non_retryable_error(clock: FakeClock) -> None:
    seen: list[BaseException] = []

    @opero(retries=1, retry_on=ConnectionError, on_failure=seen.append)
    def call(kind: str) -> None:
        raise ConnectionError("net") if kind == "net" else KeyError("k")

    with pytest.raises(AllFailedError):
        call("net")
    with pytest.raises(KeyError):
        call("key")
    assert [type(e) for e in seen] == [AllFailedError, KeyError]


def test_raising_callback_never_breaks_the_call(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("callback bug")

    wrapped = opero(retries=2, on_retry=boom, on_success=boom)(failing_then("v", 1))
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert wrapped() == "v"
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("on_retry callback raised" in m for m in messages)
    assert any("on_success callback raised" in m for m in messages)


@pytest.mark.asyncio
async def test_async_callbacks_are_awaited(clock: FakeClock) -> None:
    events: list[str] = []

    async def on_retry(error: BaseException, attempt: int) -> None:
        events.append(f"retry {attempt}")

    async def on_success(result: Any) -> None:
        events.append(f"success {result}")

    async def on_hit() -> None:
        events.append("hit")

    calls = 0

    @opero(retries=2, cache=True, on_retry=on_retry, on_success=on_success, on_cache_hit=on_hit)
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("once")
        return x

    assert await fetch(3) == 3
    assert await fetch(3) == 3
    assert events == ["retry 1", "success 3", "hit"]


@pytest.mark.asyncio
async def test_raising_async_callback_is_contained(clock: FakeClock) -> None:
    async def on_success(result: Any) -> None:
        raise ValueError("bad callback")

    @opero(on_success=on_success)
    async def fetch() -> int:
        return 1

    assert await fetch() == 1


def test_async_callback_on_sync_function_is_rejected() -> None:
    async def on_retry(error: BaseException, attempt: int) -> None: ...

    with pytest.raises(ConfigurationError, match="on_retry"):
        opero(on_retry=on_retry)(lambda: 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"on_retry": lambda a, b, c: None},
        {"on_success": lambda a, b: None},
        {"on_failure": lambda a, b: None},
        {"on_cache_hit": lambda a: None},
        {"on_success": "print"},
    ],
)
def test_wrong_callback_arity_is_rejected(kwargs: dict[str, Any]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ConfigurationError, match=name):
        opero(**kwargs)(lambda: 1)


def test_builtin_callbacks_without_signature_are_accepted(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    wrapped = opero(on_success=print)(lambda: "printed")
    wrapped()
    assert capsys.readouterr().out == "printed\n"
