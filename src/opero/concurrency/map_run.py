"""One map in progress: chunks in flight, deadlines, dead workers, stuck threads.

Work moves in chunks both ways: a chunk is ``(indices, items)`` and comes back
as a batch ``(indices, values, failed positions)`` with each exception in its
item's slot, so the per-item cost in the parent is a list append.  Every item
ends with exactly one outcome: its result, its exception, ``TimeoutError``,
``CancelledItemError`` or ``ConcurrencyError``.  When a worker process dies the
pool is rebuilt and the items it may have held are retried one at a time, so
an item that kills its worker is found and charged, and innocent ones are not.
"""

from __future__ import annotations

import itertools
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from opero.concurrency.parent_cache import ParentCache
from opero.concurrency.pool import (
    NOT_STARTED,
    Batch,
    Chunk,
    ThreadJob,
    kill_process_pool,
    process_pool,
    thread_pool,
)
from opero.concurrency.worker import (
    WorkerSpec,
    merge_delta,
    run_chunk_in_worker,
    run_chunk_with_deadline,
)
from opero.core import clock
from opero.exceptions import CancelledItemError, ConcurrencyError

if TYPE_CHECKING:
    from opero.concurrency.dispatch import MapPlan

__all__ = ["MapCancelledError", "MapRun"]


class MapCancelledError(Exception):
    """Raised inside the map loop when another thread cancelled it."""


def _failed_batch(indices: list[int], error: Callable[[], BaseException]) -> Batch:
    return (indices, [error() for _ in indices], list(range(len(indices))))


class MapRun:
    """The state of one map: chunks in flight, deadlines, suspects after a worker died."""

    def __init__(
        self,
        plan: MapPlan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        size: int,
        workers: int,
    ) -> None:
        self.plan = plan
        self.args = args
        self.kwargs = kwargs
        self.size = size
        self.workers = workers
        self.process = plan.mode != "thread"
        #: Dask mode: the cluster's executor (scheduling and lost workers are its job),
        #: and the suspects' tasks, each sent with nothing else of the map in flight.
        self.executor: Any = None
        self.lone: set[Future[Any]] = set()
        self.limit = workers if plan.timeout is not None else workers * 2
        self.in_flight: dict[Future[Any], Chunk] = {}
        self.submitted_at: dict[Future[Any], float] = {}
        #: Process modes: the pool each chunk went to, and how many chunks each broken
        #: pool held when it broke (a death is charged only to an item that ran alone).
        self.pool_of: dict[Future[Any], Any] = {}
        self.held_when_broken: dict[int, int] = {}
        self.suspects: deque[tuple[int, Any]] = deque()
        self.deaths: dict[int, int] = {}
        #: Process and Dask modes with a cache: lookups, stores, duplicates' leaders.
        self.cache = (
            ParentCache(plan, args, kwargs) if self.process and plan.cache is not None else None
        )
        self.ready: deque[Batch] = deque()
        self.cancelled = False
        self.backlog: Callable[[], int] = lambda: 0
        self.backlog_limit = 0
        #: Set from another thread to stop the map (async_process cancellation).
        self.cancel: threading.Event | None = None
        self.consumed = 0
        self.pool: Any = None
        #: Thread mode with a timeout: the map's own threads (see ``_release_stuck_threads``).
        self.own_threads: ThreadPoolExecutor | None = None
        if self.process:
            self.extra = _dumps((args, kwargs))
        else:
            self.job = ThreadJob(
                plan.thread_call,
                args,
                kwargs,
                plan.should_process,
                track_start=plan.timeout is not None,
            )

    # -- feeding -------------------------------------------------------------------------
    def batches(self, source: Iterator[Any]) -> Iterator[Batch]:
        exhausted = False
        while True:
            while (
                not exhausted
                and not self.suspects
                and len(self.in_flight) < self.limit
                and self.backlog() < self.backlog_limit
            ):
                items = list(itertools.islice(source, self.size))
                if not items:
                    exhausted = True
                    break
                start = self.consumed
                self.consumed += len(items)
                self._feed((list(range(start, self.consumed)), items))
                if self.ready and self.cancelled:
                    break  # hand these out before reading further
            if self.suspects and not self.in_flight:
                index, item = self.suspects.popleft()
                self._submit(([index], [item]), alone=True)
            yield from self._drain()
            if not self.in_flight:
                if exhausted and not self.suspects:
                    return
                continue
            done, _ = wait(
                list(self.in_flight), timeout=self._wait_time(), return_when=FIRST_COMPLETED
            )
            if self.cancel is not None and self.cancel.is_set():
                raise MapCancelledError
            for future in done:
                self._collect(future)
            self._expire()
            yield from self._drain()  # hand results out before reading further input

    def _drain(self) -> Iterator[Batch]:
        while self.ready:
            batch = self.ready.popleft()
            yield batch
            if self.cache is not None:
                yield from self.cache.shared(batch)

    def _feed(self, chunk: Chunk) -> None:
        plan = self.plan
        if self.process and plan.should_process is not None and not plan.should_process():
            self.cancelled = True
        if self.cancelled:
            # Everything not yet started is reported, not silently dropped, a chunk
            # at a time, so an endless input stays lazy.
            self.ready.append(_failed_batch(chunk[0], lambda: CancelledItemError(NOT_STARTED)))
            return
        if self.cache is not None:
            hits, chunk = self.cache.lookup(chunk)
            if hits is not None:
                self.ready.append(hits)
            if not chunk[0]:
                return
        if self.process:  # counted here once; resubmissions after a death or timeout are not calls
            plan.pipeline.counters.add("entries", len(chunk[0]))
        if self.process and plan.limiter is not None:
            delay = plan.pipeline.rate_delay((chunk[1][0], *self.args), self.kwargs)
            if delay > 0:
                clock.sleep(delay)
        self._submit(chunk)

    def _submit(self, chunk: Chunk, *, alone: bool = False) -> None:
        plan = self.plan
        if self.process:
            packed = self._pack_items(chunk)
            if packed is None:
                return
            chunk, data = packed
            spec: WorkerSpec = plan.spec
            if self.executor is not None:
                task = (spec.key, spec.blob, data, self.extra)
                future = (
                    self.executor.submit(run_chunk_in_worker, *task)
                    if plan.timeout is None  # else the worker keeps the deadline, from the start
                    else self.executor.submit(run_chunk_with_deadline, *task, plan.timeout)
                )
                if alone:  # a suspect, sent with nothing else of the map in flight
                    self.lone.add(future)
                self.in_flight[future] = chunk
                self.submitted_at[future] = time.monotonic()
                return
            # A map with a timeout may have to kill its pool: it gets one of its own.
            owner = id(plan) if plan.timeout is not None else None
            for last_try in (False, True):
                self.pool = process_pool(
                    plan.start_method,
                    self.workers,
                    warm=spec if plan.timeout is not None else None,
                    owner=owner,
                )
                try:
                    future = self.pool.submit(
                        run_chunk_in_worker, spec.key, spec.blob, data, self.extra
                    )
                    break
                except (BrokenProcessPool, RuntimeError, OSError, EOFError):
                    # The pool broke under us: drop it; the chunk goes to a fresh one, uncharged.
                    if last_try:
                        raise
                    kill_process_pool(self.pool)
            self.pool_of[future] = self.pool
        elif plan.timeout is not None:
            if self.own_threads is None:
                self.own_threads = ThreadPoolExecutor(self.workers, "opero-timeout")
            future = self.own_threads.submit(self.job.run, chunk[0], chunk[1])
        else:
            self.pool = thread_pool(self.workers)
            future = self.pool.submit(self.job.run, chunk[0], chunk[1])
        self.in_flight[future] = chunk
        self.submitted_at[future] = time.monotonic()

    def _pack_items(self, chunk: Chunk) -> tuple[Chunk, bytes] | None:
        """The chunk's items as bytes; an item that cannot be pickled fails alone, here."""
        try:
            return chunk, _dumps(chunk[1])
        except Exception:
            kept: Chunk = ([], [])
            for index, item in zip(*chunk, strict=True):
                try:
                    _dumps(item)
                except Exception as exc:
                    problem = ConcurrencyError(
                        f"the item of type {type(item).__qualname__} could not be sent to a "
                        f"worker process ({type(exc).__name__})"
                    )
                    self.ready.append(([index], [problem], [0]))
                else:
                    kept[0].append(index)
                    kept[1].append(item)
            return (kept, _dumps(kept[1])) if kept[0] else None

    # -- collecting ----------------------------------------------------------------------
    def _collect(self, future: Future[Any]) -> None:
        alone = future in self.lone
        self.lone.discard(future)
        chunk = self.in_flight.pop(future, None)
        self.submitted_at.pop(future, None)
        pool = self.pool_of.pop(future, None)
        if chunk is None:
            return
        indices, items = chunk
        try:
            payload = future.result()
        except BrokenProcessPool:
            key = id(pool)
            if key not in self.held_when_broken:
                self.held_when_broken[key] = 1 + sum(p is pool for p in self.pool_of.values())
            self._worker_died(chunk, alone=self.held_when_broken[key] == 1)
            return
        except Exception as exc:  # the pool itself failed (e.g. could not pickle the arguments)
            if self.executor is not None and _killed_worker(exc):
                self._killed_on_cluster(chunk, alone=alone)
                return
            problem = f"the pool could not run this item ({type(exc).__name__}: {exc})"
            self.ready.append(_failed_batch(indices, lambda: ConcurrencyError(problem)))
            return
        if not self.process:
            values, failed = payload
        else:
            # Dask: unpickled where it was fetched (cluster._fetch).
            unpacked = payload if self.executor is not None else pickle.loads(payload)  # noqa: S301
            values, failed, delta = unpacked
            # The worker's retries, fallbacks and failures: counted where they happened.
            merge_delta(self.plan.pipeline.counters, delta)
            if self.cache is not None:
                self.cache.store(items, values, failed)
        self.ready.append((indices, values, failed))

    def _killed_on_cluster(self, chunk: Chunk, *, alone: bool) -> None:
        """A task took down every worker the scheduler gave it (``KilledWorker``).

        Tasks share workers, so a task in company may have died for a neighbour:
        its items are run again one at a time with nothing else of the map in
        flight, and only an item that still kills its workers alone is charged.
        """
        indices, items = chunk
        if alone and len(indices) == 1:
            problem = "the item's task killed every Dask worker that ran it (KilledWorker)"
            self.ready.append(_failed_batch(indices, lambda: ConcurrencyError(problem)))
            return
        self.suspects.extend(zip(indices, items, strict=True))

    def _worker_died(self, chunk: Chunk, *, alone: bool) -> None:
        """A worker died: rebuild the pool; retry what it may have held, one item at a time."""
        lone = alone and len(chunk[0]) == 1
        for index, item in zip(*chunk, strict=True):
            if lone:  # alone in flight: this item is the one that killed its worker
                self.deaths[index] = self.deaths.get(index, 0) + 1
            if self.deaths.get(index, 0) > self.plan.retries:
                problem = (
                    f"the worker process died {self.deaths[index]} times while running this item"
                )
                self.ready.append(([index], [ConcurrencyError(problem)], [0]))
            else:
                self.suspects.append((index, item))

    def _wait_time(self) -> float | None:
        if self.plan.timeout is not None and self.executor is None:  # (Dask: worker deadlines)
            return 0.05
        return None if self.cancel is None else 0.1

    def _expire(self) -> None:
        timeout = self.plan.timeout
        if timeout is None or self.executor is not None:
            return  # (Dask: the worker keeps the deadline, see run_chunk_with_deadline)
        now = time.monotonic()  # items really run: deadlines are real time, not opero's clock
        started = None if self.process else self.job.started
        expired = []
        for future, (indices, _) in self.in_flight.items():
            begun = self.submitted_at[future] if started is None else started.get(indices[0])
            if begun is not None and now - begun >= timeout and not future.done():
                expired.append(future)
        if not expired:
            return
        message = f"item did not finish within {timeout} s"
        for future in expired:
            indices, _ = self.in_flight.pop(future)
            self.submitted_at.pop(future, None)
            self.ready.append(_failed_batch(indices, lambda: TimeoutError(message)))
        if self.process:
            # The stuck worker cannot be stopped alone: replace the pool, resubmit the rest.
            others = list(self.in_flight.values())
            self.in_flight.clear()
            self.submitted_at.clear()
            self.pool_of.clear()
            kill_process_pool(self.pool)
            for chunk in others:
                self._submit(chunk)
        else:
            self._release_stuck_threads()

    def _release_stuck_threads(self) -> None:
        """Move the items still queued to fresh threads: the timed-out ones hold the old.

        A thread cannot be stopped from outside, so a timed-out item keeps its
        thread until it returns.  Left alone, the items queued behind it would
        wait for it, and a map whose every thread is stuck would outlive its
        timeouts.  The old pool is left to wind down as its items return.
        """
        old, self.own_threads = self.own_threads, None
        queued = [future for future in self.in_flight if future.cancel()]
        for future in queued:
            chunk = self.in_flight.pop(future)
            self.submitted_at.pop(future, None)
            self._submit(chunk)
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)

    def stop(self, *, interrupted: bool) -> None:
        """Stop feeding and cancel what has not started.

        Interrupted (Ctrl-C, cancellation) the process workers are killed at once;
        a consumer that merely leaves an ``imap`` lets running chunks finish, since
        other maps may share the pool.
        """
        if not self.process:
            self.job.stop.set()
        if (
            self.process
            and self.executor is None
            and interrupted
            and self.pool is not None
            and self.in_flight
        ):
            kill_process_pool(self.pool)  # the pool fails what was pending; nothing to cancel
        else:
            for future in self.in_flight:
                future.cancel()
        self.in_flight.clear()
        self.pool_of.clear()
        if self.own_threads is not None:
            self.own_threads.shutdown(wait=False, cancel_futures=True)
            self.own_threads = None


def _killed_worker(error: BaseException) -> bool:
    from opero.concurrency.cluster import is_killed_worker  # noqa: PLC0415

    return is_killed_worker(error)


def _dumps(value: Any) -> bytes:
    """pickle when it can (fast), cloudpickle when it must (lambdas, local classes)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle  # noqa: PLC0415

        packed: bytes = cloudpickle.dumps(value)
        return packed
