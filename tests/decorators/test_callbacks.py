"""Callbacks on both shells: both arities, sync and async callbacks, and callbacks that raise.

On the async shell the callbacks are written as ``async def`` (``shell.fn``), so
they must be awaited; sync callbacks on an async function are tested on their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from opero import AllFailedError, ConfigurationError, opero
from opero.testing import FakeClock
from shells import Shell


def failing_then(value: Any, failures: int) -> Callable[..., Any]:
    state = {"left": failures}

    def call(x: int = 0) -> Any:
        if state["left"] > 0:
            state["left"] -= 1
            raise ConnectionError(f"left {state['left']}")
        return value

    return call


def test_callbacks_with_arguments(clock: FakeClock, shell: Shell) -> None:
    events: list[tuple[Any, ...]] = []
    wrapped = opero(
        retries=3,
        cache=True,
        on_retry=shell.fn(lambda e, attempt: events.append(("retry", str(e), attempt))),
        on_success=shell.fn(lambda result: events.append(("success", result))),
        on_failure=shell.fn(lambda e: events.append(("failure", type(e).__name__))),
        on_cache_hit=shell.fn(lambda: events.append(("hit",))),
    )(shell.fn(failing_then("v", 2)))
    assert shell.call(wrapped, 1) == "v"
    assert shell.call(wrapped, 1) == "v"
    assert events == [
        ("retry", "left 1", 1),
        ("retry", "left 0", 2),
        ("success", "v"),
        ("hit",),
    ]


def test_callbacks_without_arguments(clock: FakeClock, shell: Shell) -> None:
    counts = {"retry": 0, "success": 0, "failure": 0}

    @shell.fn
    def on_retry() -> None:
        counts["retry"] += 1

    @shell.fn
    def on_success() -> None:
        counts["success"] += 1

    @shell.fn
    def on_failure() -> None:
        counts["failure"] += 1

    ok = opero(retries=2, on_retry=on_retry, on_success=on_success, on_failure=on_failure)(
        shell.fn(failing_then(1, 1))
    )
    bad = opero(retries=1, on_retry=on_retry, on_success=on_success, on_failure=on_failure)(
        shell.fn(failing_then(1, 10))
    )
    assert shell.call(ok) == 1
    with pytest.raises(AllFailedError):
        shell.call(bad)
    assert counts == {"retry": 2, "success": 1, "failure": 1}


def test_on_failure_gets_all_failed_error_or_the_non_retryable_error(
    clock: FakeClock, shell: Shell
) -> None:
    seen: list[BaseException] = []

    @opero(retries=1, retry_on=ConnectionError, on_failure=shell.fn(seen.append))
    @shell.fn
    def call(kind: str) -> None:
        raise ConnectionError("net") if kind == "net" else KeyError("k")

    with pytest.raises(AllFailedError):
        shell.call(call, "net")
    with pytest.raises(KeyError):
        shell.call(call, "key")
    assert [type(e) for e in seen] == [AllFailedError, KeyError]


def test_raising_callback_never_breaks_the_call(
    clock: FakeClock, shell: Shell, caplog: pytest.LogCaptureFixture
) -> None:
    @shell.fn
    def boom(*args: Any) -> None:
        raise RuntimeError("callback bug")

    wrapped = opero(retries=2, on_retry=boom, on_success=boom)(shell.fn(failing_then("v", 1)))
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert shell.call(wrapped) == "v"
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("on_retry callback raised" in m for m in messages)
    assert any("on_success callback raised" in m for m in messages)


@pytest.mark.asyncio
async def test_async_function_takes_sync_and_async_callbacks(clock: FakeClock) -> None:
    events: list[str] = []

    def on_retry(error: BaseException, attempt: int) -> None:
        events.append(f"retry {attempt}")

    async def on_success(result: Any) -> None:
        events.append(f"success {result}")

    def on_hit() -> None:
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
def test_wrong_callback_arity_is_rejected(shell: Shell, kwargs: dict[str, Any]) -> None:
    name, callback = next(iter(kwargs.items()))
    if callable(callback):
        callback = shell.fn(callback)
    with pytest.raises(ConfigurationError, match=name):
        opero(**{name: callback})(shell.fn(lambda: 1))


def test_builtin_callbacks_without_signature_are_accepted(
    clock: FakeClock, shell: Shell, capsys: pytest.CaptureFixture[str]
) -> None:
    wrapped = opero(on_success=print)(shell.fn(lambda: "printed"))
    shell.call(wrapped)
    assert capsys.readouterr().out == "printed\n"
