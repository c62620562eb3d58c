"""Helpers for the map rate and Retry-After tests: functions that log each call's start.

Each function is made by a factory, so it is a closure that cloudpickle ships by
value to any worker (local processes or Dask).  Starts go to a file, one line
each (``item start``), since a worker process cannot append to the test's list;
``time.monotonic()`` is one clock for every process of a Linux machine.  "Fails
once per item" is kept in the same directory: the call that creates an item's
marker file fails, every later one succeeds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

#: The server's pause in the Retry-After tests, and how far a start may sit inside it
#: (the clock reads on either side of the pause).
PAUSE = 0.6
TOLERANCE = 0.02


def _note(directory: str, item: int, start: float) -> None:
    with open(os.path.join(directory, "starts"), "a") as log:
        log.write(f"{item} {start!r}\n")


def _first_time(directory: str, item: int) -> bool:
    try:
        fd = os.open(os.path.join(directory, f"seen-{item}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def failing_once(directory: str) -> Callable[[int], int]:
    """A function that logs each start and fails the first call of every item."""

    def call(x: int) -> int:
        _note(directory, x, time.monotonic())
        if _first_time(directory, x):
            msg = "the first call of each item fails"
            raise RuntimeError(msg)
        return x

    return call


def afailing_once(directory: str) -> Callable[[int], Awaitable[int]]:
    """:func:`failing_once` as an ``async def`` function."""
    sync = failing_once(directory)

    async def call(x: int) -> int:
        await asyncio.sleep(0)
        return sync(x)

    return call


def refused_once(directory: str, work: float = 0.05) -> Callable[[int], int]:
    """Item 0's first call is refused with ``retry_after=PAUSE``; every call takes ``work`` s."""

    def call(x: int) -> int:
        start = time.monotonic()
        _note(directory, x, start)
        if x == 0 and _first_time(directory, x):
            error = RuntimeError("429 Too Many Requests")
            error.retry_after = PAUSE  # type: ignore[attr-defined]
            Path(directory, "refused").write_text(repr(time.monotonic()))
            raise error
        time.sleep(work)
        return x

    return call


def arefused_once(directory: str, work: float = 0.05) -> Callable[[int], Awaitable[int]]:
    """:func:`refused_once` as an ``async def`` function (its work is an ``asyncio.sleep``)."""

    async def call(x: int) -> int:
        start = time.monotonic()
        _note(directory, x, start)
        if x == 0 and _first_time(directory, x):
            error = RuntimeError("429 Too Many Requests")
            error.retry_after = PAUSE  # type: ignore[attr-defined]
            Path(directory, "refused").write_text(repr(time.monotonic()))
            raise error
        await asyncio.sleep(work)
        return x

    return call


def starts(directory: str) -> list[tuple[int, float]]:
    """Every logged start, ``(item, time)``, in time order."""
    lines = Path(directory, "starts").read_text().split()
    pairs = [(int(lines[i]), float(lines[i + 1])) for i in range(0, len(lines), 2)]
    return sorted(pairs, key=lambda pair: pair[1])


def most_in_one_second(times: list[float]) -> int:
    """The most starts any 1-s window ``[t, t + 1)`` holds (windows start at a start)."""
    ordered = sorted(times)
    best = 0
    for i, first in enumerate(ordered):
        best = max(best, sum(1 for t in ordered[i:] if t < first + 1.0))
    return best


def inside_pause(directory: str) -> list[tuple[int, float]]:
    """The starts that fell inside the server's pause (beyond the tolerance), with its end.

    The pause runs from the refusal (item 0's failing call) for ``PAUSE`` seconds.
    """
    refused = float(Path(directory, "refused").read_text())
    return [
        (item, round(t - refused, 3))
        for item, t in starts(directory)
        if refused + TOLERANCE < t < refused + PAUSE - TOLERANCE
    ]


def assert_rate_held(directory: str, results: list[Any], count: int) -> None:
    assert results == list(range(count))
    times = [t for _, t in starts(directory)]
    assert len(times) == 2 * count  # every item: one failure, one success
    assert most_in_one_second(times) <= 21, times


def assert_pause_held(directory: str, results: list[Any], count: int) -> None:
    assert results == list(range(count))
    assert inside_pause(directory) == []
    # Item 0 was retried only after the pause.
    refused = float(Path(directory, "refused").read_text())
    again = [t for item, t in starts(directory) if item == 0][1]
    assert again >= refused + PAUSE - TOLERANCE
