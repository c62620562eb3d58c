"""The pool registry: every pool ``@opmap`` uses, its creation, reuse, owner and shutdown.

Pools are shared by every mapped function with the same kind and size, kept
between calls (starting processes is the expensive part) and shut down at
interpreter exit.  They belong to the process that made them: a forked child
starts with none and builds its own.  What runs inside a process worker is in
``worker.py``.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
import threading
import weakref
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

# Batch: still imported from here by collect.py (its home is chunks.py now).
from opero.concurrency.chunks import Batch
from opero.concurrency.ownership import disown_workers, forget_forkserver, watch_owner
from opero.concurrency.worker import WorkerSpec, prepare_worker

__all__ = [
    "Batch",
    "default_start_method",
    "kill_process_pool",
    "process_pool",
    "thread_pool",
]


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
    start_method: str,
    workers: int,
    *,
    warm: WorkerSpec | None = None,
    owner: int | None = None,
) -> ProcessPoolExecutor:
    """The shared process pool for ``start_method`` and ``workers``, rebuilt if it broke.

    With ``warm`` (a map's WorkerSpec) a new pool first starts all its workers and
    builds the map's pipeline in each, so that a per-item timeout measures the item,
    not the start of a fresh interpreter or the import of the function's module.
    """
    pool = _shared_process_pool(start_method, workers, owner)
    if warm is not None and pool not in _pools().warmed:
        seen: set[int] = set()
        for _ in range(100):  # tasks that linger a moment land on different workers
            seen.update(
                f.result(timeout=60)
                for f in [
                    pool.submit(prepare_worker, warm.key, warm.blob, 0.02) for _ in range(workers)
                ]
            )
            if len(seen) >= workers:
                break
        _pools().warmed.add(pool)
    return pool


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
