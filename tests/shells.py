"""One test body, both shells: write a test once and run it on the sync and the async shell.

``@opero`` picks its sync or its async shell from ``inspect.iscoroutinefunction``.
The two shells are written separately, so every behaviour the documents
promise for both has to be checked on both.  The ``shell`` fixture
(``tests/conftest.py``) hands a test a `Shell`:

* ``shell.fn(body)`` turns a plain ``def`` into the function to decorate: the
  body itself for the sync shell, a real ``async def`` with the body's exact
  signature for the async shell (so a call whose arguments do not fit fails
  when the call is made, as it would for a hand-written coroutine function).
  The async function yields to the loop once before the body runs, as one that
  awaits I/O would.
* A body may be a generator: a bare ``yield`` gives way (the thread goes on, the
  task yields to the loop) and ``yield gate`` waits until the `Gate` is opened
  (the thread blocks, the task awaits while the loop keeps running).
* ``shell.call(f, ...)`` runs a call to completion (``asyncio.run`` for async);
  ``shell.concurrently(n, f, ...)`` starts ``n`` calls at once (threads, or tasks
  under ``asyncio.gather``) and returns each one's result or exception.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, cast

__all__ = ["Gate", "Shell"]

#: How long a gate, a thread or a task may take before the test fails instead of hanging.
PATIENCE = 5.0


class Gate:
    """A barrier that calls wait at (``yield gate`` in a body) until the test opens it."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._reached = threading.Event()

    def open(self) -> None:
        """Let every waiting and every later call through."""
        self._open.set()

    def wait(self) -> None:
        """Block the calling thread until opened (sync shell)."""
        self._reached.set()
        if not self._open.wait(PATIENCE):
            msg = "the gate was never opened"
            raise AssertionError(msg)

    async def wait_async(self) -> None:
        """Suspend the calling task until opened; the loop keeps running (async shell)."""
        self._reached.set()
        await _poll(self._open, "the gate was never opened")

    def wait_reached(self) -> None:
        """Block until some call has reached the gate."""
        if not self._reached.wait(PATIENCE):
            msg = "no call reached the gate"
            raise AssertionError(msg)

    async def wait_reached_async(self) -> None:
        """Suspend until some call has reached the gate."""
        await _poll(self._reached, "no call reached the gate")


async def _poll(event: threading.Event, failure: str) -> None:
    # A threading.Event polled from the loop: it works whichever loop or thread sets it.
    deadline = time.monotonic() + PATIENCE
    while not event.is_set():
        if time.monotonic() > deadline:
            raise AssertionError(failure)
        await asyncio.sleep(0.001)


class _Name:
    """Shows as a bare name, so a default printed into generated source refers to it by name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _drive_sync(outcome: Any) -> Any:
    """The body's result; a generator body is run to its end, waiting at each gate it yields."""
    if not inspect.isgenerator(outcome):
        return outcome
    steps = cast("Generator[object, None, Any]", outcome)
    try:
        step = next(steps)
        while True:
            if isinstance(step, Gate):
                step.wait()
            step = steps.send(None)
    except StopIteration as stop:
        return stop.value


async def _drive_async(outcome: Any) -> Any:
    """As `_drive_sync`, but a bare ``yield`` yields to the loop and a gate is awaited."""
    if not inspect.isgenerator(outcome):
        return outcome
    steps = cast("Generator[object, None, Any]", outcome)
    try:
        step = next(steps)
        while True:
            if isinstance(step, Gate):
                await step.wait_async()
            else:
                await asyncio.sleep(0)
            step = steps.send(None)
    except StopIteration as stop:
        return stop.value


def _rebuild(body: Callable[..., Any], *, is_async: bool) -> Callable[..., Any]:
    """A ``def`` or ``async def`` with ``body``'s exact parameters that calls ``body``.

    The parameters are written out (not ``*args, **kwargs``) so Python binds the
    arguments when the function is called, exactly as for a hand-written one;
    defaults are the body's own objects.
    """
    signature = inspect.signature(body)
    namespace: dict[str, Any] = {
        "_body": body,
        "_drive": _drive_async if is_async else _drive_sync,
        "_pause": asyncio.sleep,
    }
    params, passed = [], []
    for index, param in enumerate(signature.parameters.values()):
        default = param.default
        if default is not param.empty:
            namespace[f"_default{index}"] = default
            default = _Name(f"_default{index}")
        params.append(param.replace(annotation=param.empty, default=default))
        if param.kind is param.VAR_POSITIONAL:
            passed.append(f"*{param.name}")
        elif param.kind is param.VAR_KEYWORD:
            passed.append(f"**{param.name}")
        elif param.kind is param.KEYWORD_ONLY:
            passed.append(f"{param.name}={param.name}")
        else:
            passed.append(param.name)
    bare = signature.replace(parameters=params, return_annotation=signature.empty)
    call = f"_body({', '.join(passed)})"
    if is_async:
        source = f"async def _made{bare}:\n    await _pause(0)\n    return await _drive({call})\n"
    else:
        source = f"def _made{bare}:\n    return _drive({call})\n"
    exec(source, namespace)  # a test helper: the source is built from a signature
    made: Any = namespace["_made"]
    made.__name__ = getattr(body, "__name__", None) or type(body).__name__
    made.__qualname__ = getattr(body, "__qualname__", None) or type(body).__qualname__
    made.__module__ = getattr(body, "__module__", None) or type(body).__module__
    made.__doc__ = getattr(body, "__doc__", None)
    made.__signature__ = signature
    assert inspect.iscoroutinefunction(made) is is_async
    return made  # type: ignore[no-any-return]


class Shell:
    """Which of opero's shells a test runs on, and how to write and call functions for it."""

    def __init__(self, kind: str) -> None:
        if kind not in ("sync", "async"):
            msg = f"kind must be 'sync' or 'async', got {kind!r}"
            raise ValueError(msg)
        #: ``"sync"`` or ``"async"``.
        self.kind = kind
        #: Whether functions made here are coroutine functions.
        self.is_async = kind == "async"

    def __repr__(self) -> str:
        return f"Shell({self.kind!r})"

    def fn(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """``body`` as a function of this shell's kind (also usable as a decorator)."""
        if not self.is_async and not inspect.isgeneratorfunction(body):
            return body
        return _rebuild(body, is_async=self.is_async)

    def call(self, f: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``f`` and return its result (on a fresh event loop for the async shell)."""
        if not self.is_async:
            return f(*args, **kwargs)
        return asyncio.run(_awaited(f, args, kwargs))

    def concurrently(
        self, n: int, f: Callable[..., Any], /, *args: Any, gate: Gate | None = None, **kwargs: Any
    ) -> list[Any]:
        """Start ``n`` calls of ``f`` at once; each one's result or exception, in start order.

        With ``gate``, it is opened once the first call has reached it, so the
        other calls are under way while that one is held.
        """
        if self.is_async:
            return asyncio.run(_gathered(n, f, args, kwargs, gate))
        outcomes: list[Any] = [None] * n

        def worker(index: int) -> None:
            try:
                outcomes[index] = f(*args, **kwargs)
            except BaseException as exc:  # the test inspects every outcome
                outcomes[index] = exc

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        if gate is not None:
            gate.wait_reached()
            gate.open()
        for thread in threads:
            thread.join(PATIENCE)
        assert not any(thread.is_alive() for thread in threads), "a call did not finish"
        return outcomes


async def _awaited(f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return await f(*args, **kwargs)


async def _gathered(
    n: int,
    f: Callable[..., Coroutine[Any, Any, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    gate: Gate | None,
) -> list[Any]:
    tasks = [asyncio.ensure_future(f(*args, **kwargs)) for _ in range(n)]
    if gate is not None:
        await gate.wait_reached_async()
        gate.open()
    done = asyncio.gather(*tasks, return_exceptions=True)
    return list(await asyncio.wait_for(done, PATIENCE))
