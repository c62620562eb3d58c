"""Every pool ``@opmap`` uses: creation, reuse, shutdown, and what happens when a worker dies.

Pools are shared by every mapped function with the same kind and size, kept
between calls (starting processes is the expensive part) and shut down at
interpreter exit.  Process workers receive the function once per chunk as
cloudpickle bytes (so closures, lambdas and ``__main__`` functions work) and
keep the rebuilt per-item pipeline, keyed by a digest of those bytes.
Results travel back pickled by the worker itself, so a result that cannot be
pickled becomes that item's ``ConcurrencyError`` instead of breaking the map.
"""

from __future__ import annotations

import atexit
import hashlib
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from opero.exceptions import CancelledItemError, ConcurrencyError

__all__ = [
    "Outcome",
    "WorkerSpec",
    "default_start_method",
    "kill_process_pool",
    "process_pool",
    "run_chunk_in_worker",
    "thread_pool",
]

#: One item's result: ``(index, ok, value)``; ``value`` is the exception when not ok.
Outcome = tuple[int, bool, Any]

#: The message of an item that ``should_process`` stopped before it started.
NOT_STARTED = "not started: should_process said stop"

_lock = threading.Lock()
_thread_pools: dict[int, ThreadPoolExecutor] = {}
_process_pools: dict[tuple[str, int], ProcessPoolExecutor] = {}


def default_start_method() -> str:
    """``forkserver`` on Linux, ``spawn`` elsewhere.

    ``fork`` copies a parent that may hold locks in other threads (opero's own
    pools, logging, a web server) and can deadlock the child; the others start
    clean interpreters, and cloudpickle carries the function across.
    """
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """The shared thread pool of ``workers`` threads."""
    with _lock:
        pool = _thread_pools.get(workers)
        if pool is None:
            pool = _thread_pools[workers] = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=f"opero-{workers}"
            )
        return pool


def process_pool(start_method: str, workers: int) -> ProcessPoolExecutor:
    """The shared process pool for ``start_method`` and ``workers``, rebuilt if it broke."""
    key = (start_method, workers)
    with _lock:
        pool = _process_pools.get(key)
        if (
            pool is None
            or getattr(pool, "_broken", False)
            or getattr(pool, "_shutdown_thread", False)
        ):
            pool = _process_pools[key] = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context(start_method)
            )
        return pool


def kill_process_pool(pool: Executor) -> None:
    """Kill every worker of ``pool`` now (a stuck item, or Ctrl-C) and forget the pool.

    ``concurrent.futures`` has no way to stop one worker, so the whole pool goes;
    the next map builds a fresh one and the caller resubmits what was in flight.
    """
    with _lock:
        for key, known in list(_process_pools.items()):
            if known is pool:
                del _process_pools[key]
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)
    pool.shutdown(wait=False, cancel_futures=True)


@atexit.register
def _shutdown_pools() -> None:
    with _lock:
        threads, processes = list(_thread_pools.values()), list(_process_pools.values())
        _thread_pools.clear()
        _process_pools.clear()
    for pool in processes:
        pool.shutdown(wait=True, cancel_futures=True)
    for tpool in threads:
        tpool.shutdown(wait=False, cancel_futures=True)


class ThreadJob:
    """One map's per-item call in pool threads: runs chunks, notes start times for deadlines."""

    __slots__ = ("args", "call", "kwargs", "should_process", "started", "stop")

    def __init__(
        self,
        call: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        should_process: Callable[[], Any] | None,
        *,
        track_start: bool,
    ) -> None:
        self.call = call
        self.args = args
        self.kwargs = kwargs
        self.should_process = should_process
        #: Set to stop starting items (should_process said no, or the map was left).
        self.stop = threading.Event()
        #: When each item began (only with a timeout: deadlines count from the start).
        self.started: dict[int, float] | None = {} if track_start else None

    def run(self, chunk: list[tuple[int, Any]]) -> list[Outcome]:
        """Run the chunk's items one after another; errors become outcomes."""
        outcomes: list[Outcome] = []
        should_process, started = self.should_process, self.started
        for index, item in chunk:
            if self.stop.is_set() or (should_process is not None and not should_process()):
                self.stop.set()
                outcomes.append((index, False, CancelledItemError(NOT_STARTED)))
                continue
            if started is not None:
                started[index] = time.monotonic()
            try:
                outcomes.append((index, True, self.call(item, *self.args, **self.kwargs)))
            except Exception as exc:
                outcomes.append((index, False, exc))
        return outcomes


class WorkerSpec:
    """What a process worker needs to rebuild the per-item pipeline: cloudpickle bytes, digest."""

    __slots__ = ("blob", "key")

    def __init__(self, payload: Any) -> None:
        import cloudpickle  # noqa: PLC0415 - process modes only

        #: The function and its retry/fallback settings, by value.
        self.blob: bytes = cloudpickle.dumps(payload)
        #: Names the rebuilt pipeline in each worker's memory.
        self.key = hashlib.sha256(self.blob).hexdigest()


#: In each worker process: rebuilt per-item callables, by WorkerSpec.key.
_WORKER_CALLS: dict[str, Callable[..., Any]] = {}


def run_chunk_in_worker(key: str, blob: bytes, chunk: list[tuple[int, Any]], extra: bytes) -> bytes:
    """Run in a worker process: the chunk's outcomes, pickled here so bad results stay per item."""
    import pickle  # noqa: PLC0415

    call = _WORKER_CALLS.get(key)
    if call is None:
        build = pickle.loads(blob)  # noqa: S301 - our own bytes, from the parent
        call = _WORKER_CALLS[key] = build()
    args, kwargs = pickle.loads(extra)  # noqa: S301
    if getattr(call, "_opero_is_async", False):
        import asyncio  # noqa: PLC0415

        outcomes = asyncio.run(_run_async_chunk(call, chunk, args, kwargs))
    else:
        outcomes = []
        for index, item in chunk:
            try:
                outcomes.append((index, True, call(item, *args, **kwargs)))
            except Exception as exc:
                outcomes.append((index, False, exc))
    return _pack(outcomes)


async def _run_async_chunk(
    call: Callable[..., Any],
    chunk: list[tuple[int, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> list[Outcome]:
    import asyncio  # noqa: PLC0415

    async def one(index: int, item: Any) -> Outcome:
        try:
            return (index, True, await call(item, *args, **kwargs))
        except Exception as exc:
            return (index, False, exc)

    return list(await asyncio.gather(*(one(index, item) for index, item in chunk)))


def _pack(outcomes: list[Outcome]) -> bytes:
    """Pickle the outcomes; one that cannot be pickled becomes a ConcurrencyError naming it."""
    import cloudpickle  # noqa: PLC0415

    try:
        packed: bytes = cloudpickle.dumps(outcomes)
    except Exception:
        packed = cloudpickle.dumps([_sendable(outcome) for outcome in outcomes])
    return packed


def _sendable(outcome: Outcome) -> Outcome:
    """``outcome`` itself if it pickles, else a ConcurrencyError in its place."""
    import cloudpickle  # noqa: PLC0415

    index, ok, value = outcome
    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        what = "result" if ok else "exception"
        problem = ConcurrencyError(
            f"the {what} of type {type(value).__qualname__} could not be sent back from "
            f"the worker process ({type(exc).__name__})"
        )
        return (index, False, problem)
    return outcome
