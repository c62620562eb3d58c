"""Helpers for the ``@opmap`` tests: run any mode the same way, and count calls across processes.

The mapped functions live at module level here so process workers import them
by reference under every start method.  Calls made in worker processes are
counted by appending a line to a file: worker memory is not shared with the test.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Every local mode, and which run ``async def`` functions.
MODES = ("thread", "process", "async", "async_process")
ASYNC_MODES = frozenset({"async", "async_process"})
PROCESS_MODES = frozenset({"process", "async_process"})


def run(mapped: Callable[..., Any], items: Iterable[Any], *args: Any, **kwargs: Any) -> Any:
    """Call a mapped function; await it on a fresh loop if it is async."""
    result = mapped(items, *args, **kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def drain(iterator: Any) -> list[Any]:
    """Every value of a sync or async iterator."""
    if hasattr(iterator, "__aiter__"):

        async def collect() -> list[Any]:
            return [value async for value in iterator]

        return asyncio.run(collect())
    return list(iterator)


def take(iterator: Any, count: int) -> list[Any]:
    """The first ``count`` values of a sync or async iterator; an async one is then closed."""
    if hasattr(iterator, "__aiter__"):

        async def first() -> list[Any]:
            taken: list[Any] = []
            async for value in iterator:
                taken.append(value)
                if len(taken) == count:
                    break
            await iterator.aclose()
            return taken

        return asyncio.run(first())
    return list(itertools.islice(iterator, count))


def record(path: str | os.PathLike[str], text: object) -> int:
    """Append ``text`` as a line to ``path``; how many lines equal it now (this call included)."""
    line = f"{text}\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
    return lines(path).count(str(text))


def lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of ``path`` (none if it does not exist)."""
    file = Path(path)
    return file.read_text(encoding="utf-8").splitlines() if file.exists() else []


# -- mapped functions, sync and async twins -------------------------------------------------
def square(x: int) -> int:
    return x * x


async def asquare(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


def jittered_square(x: int) -> int:
    """Later items finish first, so completion order differs from input order."""
    import time  # noqa: PLC0415

    time.sleep(0.002 * (8 - x % 8))
    return x * x


async def ajittered_square(x: int) -> int:
    await asyncio.sleep(0.002 * (8 - x % 8))
    return x * x


def combine(x: int, offset: int, *, scale: int = 1) -> int:
    return (x + offset) * scale


async def acombine(x: int, offset: int, *, scale: int = 1) -> int:
    await asyncio.sleep(0)
    return (x + offset) * scale


def fail_on_three(x: int, path: str) -> int:
    """3 always fails with ConnectionError (retryable); 4 raises KeyError; others square."""
    record(path, x)
    if x == 3:
        msg = f"item {x} is down"
        raise ConnectionError(msg)
    if x == 4:
        raise KeyError(x)
    return x * x


async def afail_on_three(x: int, path: str) -> int:
    return fail_on_three(x, path)


def fail_first_attempt(x: int, path: str) -> int:
    """Fails on the first attempt of each item, succeeds on the second."""
    if record(path, x) < 2:
        msg = f"first attempt of {x}"
        raise ConnectionError(msg)
    return x * 10


async def afail_first_attempt(x: int, path: str) -> int:
    return fail_first_attempt(x, path)


def with_key(x: int, key: list[str] | None = None) -> str:
    """Works only with the candidate ``"good"``; ``key`` holds the one candidate in use."""
    assert key is not None
    if key[0] != "good":
        msg = f"key {key[0]} refused"
        raise PermissionError(msg)
    return f"{x}:{key[0]}"


async def awith_key(x: int, key: list[str] | None = None) -> str:
    return with_key(x, key)


def pick(mode: str, sync_func: Callable[..., Any], async_func: Callable[..., Any]) -> Any:
    """The twin that ``mode`` runs."""
    return async_func if mode in ASYNC_MODES else sync_func


async def asleepy_square(x: int) -> int:
    await asyncio.sleep(0.15)
    return x * x


def logged_square(x: int, path: str) -> int:
    """Square ``x``, leaving one line per run in ``path`` (the process id and the item)."""
    record(path, f"{os.getpid()} {x}")
    return x * x


async def alogged_square(x: int, path: str) -> int:
    return logged_square(x, path)


def started_at(x: int) -> float:
    """When this item began, in wall-clock seconds (comparable across processes)."""
    import time  # noqa: PLC0415

    return time.time()


async def astarted_at(x: int) -> float:
    return started_at(x)


def pid_after(seconds: float) -> int:
    """Sleep, then report the worker's process id."""
    import time  # noqa: PLC0415

    time.sleep(seconds)
    return os.getpid()


def nap(seconds: float, path: str | None = None) -> float:
    """Sleep ``seconds`` (noting the process id in ``path`` first) and return them."""
    import time  # noqa: PLC0415

    if path is not None:
        record(path, os.getpid())
    time.sleep(seconds)
    return seconds


async def anap(seconds: float, path: str | None = None) -> float:
    if path is not None:
        record(path, os.getpid())
    await asyncio.sleep(seconds)
    return seconds


def bounded_count(limit: int, pulled: list[int]) -> Iterable[int]:
    """0, 1, 2, ... counting pulls in ``pulled[0]``; raises once ``limit`` items were pulled.

    Stands in for an endless source without letting a runaway consumer eat memory.
    """
    index = 0
    while True:
        if index >= limit:
            msg = f"pulled {limit} items from an endless source"
            raise RuntimeError(msg)
        pulled[0] += 1
        yield index
        index += 1


def slow_zero(x: int) -> int:
    """Item 0 takes half a second; every other item is instant."""
    import time  # noqa: PLC0415

    if x == 0:
        time.sleep(0.5)
    return x


async def aslow_zero(x: int) -> int:
    if x == 0:
        await asyncio.sleep(0.5)
    return x


def fail_on_sevens(x: int, path: str, offset: int = 0, *, scale: int = 1) -> int:
    """Record the call; items 3, 10, 17, ... fail on every attempt, the rest compute."""
    record(path, x)
    if x % 7 == 3:
        raise ValueError(f"item {x}")
    return (x + offset) * scale
