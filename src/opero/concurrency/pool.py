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
import functools
import hashlib
import multiprocessing
import operator
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from opero.concurrency.ownership import disown_workers, forget_forkserver, watch_owner
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
#: Work sent out: ``(indices, items)``.
Chunk = tuple[list[int], list[Any]]
#: Work come back: ``(indices, values, positions that failed)``; exceptions sit in their slots.
Batch = tuple[list[int], list[Any], list[int]]

#: The message of an item that ``should_process`` stopped before it started.
NOT_STARTED = "not started: should_process said stop"


class _Pools:
    """The pools of one process, and the lock that guards them.

    A forked child inherits the parent's pools as dead copies: their threads
    did not survive the fork, and their queues lead to the parent's workers.
    Used there, a map would wait for ever.  So the pools belong to the process
    that made them (``pid``), and a child starts from an empty ``_Pools``.
    """

    __slots__ = ("lock", "pid", "processes", "threads", "warmed")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.threads: dict[int, ThreadPoolExecutor] = {}
        #: By start method, size and owner (None: shared; else the one map allowed to kill it).
        self.processes: dict[tuple[str, int, int | None], ProcessPoolExecutor] = {}
        self.warmed: weakref.WeakSet[ProcessPoolExecutor] = weakref.WeakSet()


_state = _Pools()
#: In a forked child: the parent's pools, kept so that nothing of theirs ever runs
#: here (no finalizer, no wake-up written to the parent's pipes, no shutdown).
_inherited: list[_Pools] = []


def _pools() -> _Pools:
    """This process's pools; new ones if this process was forked since they were made.

    The pid check covers forks that skip the at-fork hooks (a C extension calling
    ``fork()`` itself); the hook below covers the rest before any code runs.
    """
    state = _state
    if state.pid != os.getpid():
        _forget_inherited()
        state = _state
    return state


def _forget_inherited() -> None:
    """In a forked child: drop the parent's pools and lock without touching them.

    The lock may have been held by a parent thread at the moment of the fork;
    the child gets a new one rather than waiting for a thread that is gone.
    """
    global _state
    inherited, _state = _state, _Pools()
    _inherited.append(inherited)
    for pool in inherited.processes.values():
        disown_workers(getattr(pool, "_processes", {}).values())
    forget_forkserver()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_inherited)


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
    state = _pools()
    with state.lock:
        pool = state.threads.get(workers)
        if pool is None:
            pool = state.threads[workers] = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=f"opero-{workers}"
            )
        return pool


def process_pool(
    start_method: str, workers: int, *, warm: bool = False, owner: int | None = None
) -> ProcessPoolExecutor:
    """The shared process pool for ``start_method`` and ``workers``, rebuilt if it broke.

    With ``warm=True`` a new pool first starts all its workers, so that a
    per-item timeout measures the item, not the start of a fresh interpreter.
    """
    pool = _shared_process_pool(start_method, workers, owner)
    if warm and pool not in _pools().warmed:
        seen: set[int] = set()
        for _ in range(100):  # tasks that linger a moment land on different workers
            seen.update(
                f.result(timeout=60)
                for f in [pool.submit(_pid_after, 0.02) for _ in range(workers)]
            )
            if len(seen) >= workers:
                break
        _pools().warmed.add(pool)
    return pool


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _shared_process_pool(start_method: str, workers: int, owner: int | None) -> ProcessPoolExecutor:
    key = (start_method, workers, owner)
    state = _pools()
    with state.lock:
        pool = state.processes.get(key)
        if (
            pool is None
            or getattr(pool, "_broken", False)
            or getattr(pool, "_shutdown_thread", False)
        ):
            pool = state.processes[key] = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context(start_method),
                initializer=watch_owner,
                initargs=(state.pid,),
            )
            # Start every worker on the first submit rather than one per submit: a
            # worker spawned while the pool's thread tears down a broken pool can
            # crash the submit or leave a worker that blocks interpreter exit.
            pool._safe_to_dynamically_spawn_children = False  # type: ignore[attr-defined]
        return pool


def kill_process_pool(pool: Executor) -> None:
    """Kill every worker of ``pool`` now (a stuck item, or Ctrl-C) and forget the pool.

    ``concurrent.futures`` has no way to stop one worker, so the whole pool goes;
    the next map builds a fresh one and the caller resubmits what was in flight.
    """
    state = _pools()
    with state.lock:
        for key, known in list(state.processes.items()):
            if known is pool:
                del state.processes[key]
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)
    # Not cancel_futures: the pool's own thread fails every pending future as broken,
    # and a future cancelled under it would make that thread die with InvalidStateError.
    pool.shutdown(wait=False)


@atexit.register
def _shutdown_pools() -> None:
    state = _pools()  # a forked child shuts down its own pools, never its parent's
    with state.lock:
        threads, processes = list(state.threads.values()), list(state.processes.values())
        state.threads.clear()
        state.processes.clear()
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

    def run(self, indices: list[int], items: list[Any]) -> tuple[list[Any], list[int]]:
        """Run the chunk's items one after another: ``(values, failed positions)``."""
        values: list[Any] = []
        failed: list[int] = []
        call, args, kwargs = self.call, self.args, self.kwargs
        should_process, started = self.should_process, self.started
        for position, (index, item) in enumerate(zip(indices, items, strict=True)):
            if self.stop.is_set() or (should_process is not None and not should_process()):
                self.stop.set()
                values.append(CancelledItemError(NOT_STARTED))
                failed.append(position)
                continue
            if started is not None:
                started[index] = time.monotonic()
            try:
                values.append(call(item, *args, **kwargs))
            except Exception as exc:
                values.append(exc)
                failed.append(position)
        return values, failed


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


def run_chunk_in_worker(key: str, blob: bytes, packed_items: bytes, extra: bytes) -> bytes:
    """Run in a worker process: the chunk's ``(values, failed positions)``, pickled here.

    Items arrive pickled by the parent (cloudpickle when plain pickle cannot),
    so lambdas and local classes can be items too.
    """
    import pickle  # noqa: PLC0415

    items = pickle.loads(packed_items)  # noqa: S301 - our own bytes, from the parent
    call = _WORKER_CALLS.get(key)
    if call is None:
        build = pickle.loads(blob)  # noqa: S301 - our own bytes, from the parent
        call = _WORKER_CALLS[key] = build()
    args, kwargs = pickle.loads(extra)  # noqa: S301
    if getattr(call, "_opero_is_async", False):
        import asyncio  # noqa: PLC0415

        values, failed = asyncio.run(_run_async_chunk(call, items, args, kwargs))
    else:
        values, failed = _run_sync_chunk(call, items, args, kwargs)
    return _pack(values, failed)


def run_chunk_with_deadline(
    key: str, blob: bytes, packed_items: bytes, extra: bytes, timeout: float
) -> bytes:
    """Run on a Dask worker: the chunk, given ``timeout`` seconds from when it starts here.

    The submitting process cannot tell when a task leaves the scheduler's queue,
    so the deadline is kept where the item runs.  A thread cannot be stopped:
    a late item goes on in a daemon thread whose result is dropped, and the
    worker's own thread is freed for the items queued behind it.
    """
    outcome: list[bytes] = []
    problem: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(run_chunk_in_worker(key, blob, packed_items, extra))
        except BaseException as exc:  # handed to the worker's thread below
            problem.append(exc)

    runner = threading.Thread(target=run, name="opero-deadline", daemon=True)
    runner.start()
    runner.join(timeout)
    if problem:
        raise problem[0]
    if outcome:
        return outcome[0]
    import pickle  # noqa: PLC0415

    count = len(pickle.loads(packed_items))  # noqa: S301 - our own bytes, from the parent
    late = [TimeoutError(f"item did not finish within {timeout} s") for _ in range(count)]
    return _pack(late, list(range(count)))


def _run_sync_chunk(
    call: Callable[..., Any], items: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], list[int]]:
    """Each item through its pipeline; with nothing to do on success, the function directly.

    ``call._opero_direct`` is the plain function and ``call._opero_resume`` continues the
    retry loop from a first error, so a successful item costs one plain call, made
    by ``map`` in C: for trivial items the loop itself would cost more than the work.
    """
    direct = getattr(call, "_opero_direct", None)
    resume = getattr(call, "_opero_resume", None)
    if direct is None or resume is None:
        return _run_each(call, items, args, kwargs)
    one = direct if not args and not kwargs else functools.partial(_call_with, direct, args, kwargs)
    values: list[Any] = []
    failed: list[int] = []
    remaining = iter(items)
    while True:
        try:
            values.extend(map(one, remaining))  # keeps what came before an error (CPython)
        except Exception as first:
            # ``remaining`` is past the item that raised: its position is what was taken.
            position = len(items) - operator.length_hint(remaining) - 1
            try:
                values.append(resume(first, (items[position], *args), kwargs))
            except Exception as exc:
                values.append(exc)
                failed.append(position)
            continue
        return values, failed


def _call_with(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], item: Any
) -> Any:
    return func(item, *args, **kwargs)


def _run_each(
    call: Callable[..., Any], items: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], list[int]]:
    values: list[Any] = []
    failed: list[int] = []
    for position, item in enumerate(items):
        try:
            values.append(call(item, *args, **kwargs))
        except Exception as exc:
            values.append(exc)
            failed.append(position)
    return values, failed


async def _run_async_chunk(
    call: Callable[..., Any], items: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], list[int]]:
    import asyncio  # noqa: PLC0415

    async def one(item: Any) -> tuple[bool, Any]:
        try:
            return (True, await call(item, *args, **kwargs))
        except Exception as exc:
            return (False, exc)

    results = await asyncio.gather(*(one(item) for item in items))
    return [value for _, value in results], [i for i, (ok, _) in enumerate(results) if not ok]


def _pack(values: list[Any], failed: list[int]) -> bytes:
    """Pickle a batch; a value that cannot be pickled becomes a ConcurrencyError in its slot."""
    import pickle  # noqa: PLC0415

    import cloudpickle  # noqa: PLC0415

    # An exception may pickle yet fail to rebuild (a custom __init__): check the
    # failed ones here, so the parent never meets a batch it cannot load.
    if failed and not all(_rebuilds(values[position]) for position in failed):
        bad = set(failed)
        safe = [
            value if position not in bad or _rebuilds(value) else _unsendable(value, True, None)
            for position, value in enumerate(values)
        ]
        values = safe
    try:  # plain pickle first: C-fast for ordinary data; cloudpickle for lambdas and the like
        packed: bytes = pickle.dumps((values, failed), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        packed = b""
    if packed:
        return packed
    try:
        packed = cloudpickle.dumps((values, failed))
    except Exception:
        bad = set(failed)
        safe = [_sendable(value, position in bad) for position, value in enumerate(values)]
        still = sorted(
            bad
            | {p for p, (was, now) in enumerate(zip(values, safe, strict=True)) if was is not now}
        )
        packed = cloudpickle.dumps((safe, still))
    return packed


def _rebuilds(value: Any) -> bool:
    import pickle  # noqa: PLC0415

    import cloudpickle  # noqa: PLC0415

    try:
        pickle.loads(cloudpickle.dumps(value))  # noqa: S301 - bytes made just here
    except Exception:
        return False
    return True


def _unsendable(value: Any, is_error: bool, exc: BaseException | None) -> ConcurrencyError:
    what = "exception" if is_error else "result"
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return ConcurrencyError(
        f"the {what} of type {type(value).__qualname__} could not be sent back from "
        f"the worker process{why}"
    )


def _sendable(value: Any, is_error: bool) -> Any:
    """``value`` itself if it pickles, else a ConcurrencyError naming its type."""
    import cloudpickle  # noqa: PLC0415

    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        return _unsendable(value, is_error, exc)
    return value
