"""Helpers for the ``mode="dask"`` tests: functions the cluster's workers import, run records.

The mapped functions live at module level here, so the workers (other
processes, started with this directory on their ``sys.path``) unpickle them by
reference, and a second submitting process that imports this module gets the
same cache keys.  Calls made on the workers are counted as lines appended to a
file: worker memory is not shared with the test.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: This directory: put it on ``sys.path`` of a second submitting process.
HERE = Path(__file__).resolve().parent
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: The redis database the test suite may write to (see tests/core/store_helpers.py).
REDIS_DB = 9
REDIS_CONFIG = {"host": REDIS_HOST, "port": REDIS_PORT, "db": REDIS_DB}


# -- recording calls made in other processes ------------------------------------------------
def record(path: str | os.PathLike[str], text: object) -> int:
    """Append ``text`` as a line to ``path``; how many lines equal it now (this one included)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{text}\n")
    return lines(path).count(str(text))


def lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of ``path`` (none if it does not exist)."""
    file = Path(path)
    return file.read_text(encoding="utf-8").splitlines() if file.exists() else []


def items_run(path: str | os.PathLike[str]) -> list[int]:
    """The items of every ``"<pid> <item>"`` line of ``path``, in the order they ran."""
    return [int(line.split()[1]) for line in lines(path)]


def pids_run(path: str | os.PathLike[str]) -> set[int]:
    """The process ids of every ``"<pid> <item>"`` line of ``path``."""
    return {int(line.split()[0]) for line in lines(path)}


# -- the cluster -------------------------------------------------------------------------------
def worker_pids(client: Any) -> set[int]:
    """The process ids of the cluster's workers now."""
    return set(client.run(os.getpid).values())


def busy_threads(client: Any) -> tuple[int, int]:
    """Worker threads running a task, and timed-out items still running on their own thread."""
    tasks = client.run(lambda dask_worker: len(dask_worker.active_threads))
    late = client.run(
        lambda: sum(t.name == "opero-deadline" and t.is_alive() for t in threading.enumerate())
    )
    return sum(tasks.values()), sum(late.values())


def wait_idle(client: Any, within: float = 10.0) -> None:
    """Wait until no worker runs a task and no timed-out item is still running."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if busy_threads(client) == (0, 0):
            return
        time.sleep(0.02)
    raise AssertionError(f"the cluster's workers stayed busy for {within} s")


# -- mapped functions ----------------------------------------------------------------------
def square(x: int) -> int:
    return x * x


def whoami(x: int) -> int:
    """The process id that ran the item."""
    return os.getpid()


async def awhoami(x: int) -> int:
    await asyncio.sleep(0)
    return os.getpid()


def logged_square(x: int, path: str) -> int:
    """Square ``x``, leaving a ``"<pid> <item>"`` line in ``path``."""
    record(path, f"{os.getpid()} {x}")
    return x * x


def slow_logged_square(x: int, path: str) -> int:
    """Note the start in ``path``, take 0.15 s, square ``x``."""
    record(path, f"{os.getpid()} {x}")
    time.sleep(0.15)
    return x * x


def zero_is_slow(x: int) -> int:
    """Item 0 takes 0.3 s; every other item is instant."""
    if x == 0:
        time.sleep(0.3)
    return x * x


def fail_on_three(x: int, path: str) -> int:
    """3 always fails with ConnectionError; 4 raises KeyError; others square."""
    record(path, f"{os.getpid()} {x}")
    if x == 3:
        msg = f"item {x} is down"
        raise ConnectionError(msg)
    if x == 4:
        raise KeyError(x)
    return x * x


def fail_first_attempt(x: int, path: str) -> int:
    """Fails on the first attempt of each item, succeeds on the second."""
    record(path, f"{os.getpid()} {x}")
    if items_run(path).count(x) < 2:
        msg = f"first attempt of {x}"
        raise ConnectionError(msg)
    return x * 10


def with_key(x: int, key: list[str] | None = None) -> str:
    """Works only with the candidate ``"good"``; ``key`` holds the one candidate in use."""
    assert key is not None
    if key[0] != "good":
        msg = f"key {key[0]} refused"
        raise PermissionError(msg)
    return f"{x}:{key[0]}"


def started_at(x: int) -> tuple[int, float]:
    """The worker's process id and when the item began, in wall-clock seconds."""
    return os.getpid(), time.time()


def span(x: int, seconds: float) -> tuple[int, float, float]:
    """Sleep ``seconds``; the process id and the wall-clock start and end."""
    began = time.time()
    time.sleep(seconds)
    return os.getpid(), began, time.time()


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def die_on_three(x: int) -> int:
    """Item 3 takes its worker process down (``os._exit``); the others square."""
    if x == 3:
        os._exit(1)
    return x * x


def task_key(x: int) -> str:
    """The key of the Dask task running this item: items with one key shared one task."""
    from distributed import get_worker  # noqa: PLC0415

    return str(get_worker().get_current_task())


async def asleepy_square(x: int) -> int:
    await asyncio.sleep(0.2)
    return x * x


async def afail_first_attempt(x: int, path: str) -> int:
    await asyncio.sleep(0)
    return fail_first_attempt(x, path)


def bounded_count(limit: int, pulled: list[int]) -> Iterator[int]:
    """0, 1, 2, ... counting pulls in ``pulled[0]``; raises once ``limit`` items were pulled."""
    index = 0
    while True:
        if index >= limit:
            msg = f"pulled {limit} items from an endless source"
            raise RuntimeError(msg)
        pulled[0] += 1
        yield index
        index += 1


def plain(value: Any) -> Any:
    """An exception by its type name (for readable assertion messages), else the value."""
    return type(value).__name__ if isinstance(value, BaseException) else value


async def anap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds
