"""The map loop: feeds chunks of items to a pool, collects one outcome per item.

A bounded number of chunks is in flight, so memory stays flat however long
the input is, and ``imap`` can consume an endless iterator.  Every item ends
with exactly one outcome: its result, its exception, ``TimeoutError``,
``CancelledItemError`` or ``ConcurrencyError``.  When a worker process dies the
pool is rebuilt and the items it may have held are retried one at a time, so
an item that kills its worker is found and charged, and innocent ones are not.
"""

from __future__ import annotations

import itertools
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from opero.concurrency.pool import (
    NOT_STARTED,
    Outcome,
    ThreadJob,
    WorkerSpec,
    kill_process_pool,
    process_pool,
    run_chunk_in_worker,
    thread_pool,
)
from opero.core import clock
from opero.core.backends.memory import MISSING
from opero.exceptions import CancelledItemError, ConcurrencyError

__all__ = ["Collector", "MapPlan", "iterate"]


class MapPlan:
    """Everything the loop needs about one mapped function, fixed at decoration time."""

    __slots__ = (
        "cache",
        "chunk_size",
        "limiter",
        "mode",
        "on_cache_hit",
        "pipeline",
        "progress",
        "retries",
        "should_process",
        "spec",
        "start_method",
        "thread_call",
        "timeout",
        "workers",
    )

    mode: str
    workers: int
    chunk_size: int | None
    timeout: float | None
    should_process: Callable[[], Any] | None
    progress: bool
    start_method: str
    retries: int
    #: Process modes: the parent-side cache and limiter (thread/async modes: None).
    cache: Any
    limiter: Any
    #: The parent's pipeline: statistics, cache hits, rate-limit waits.
    pipeline: Any
    on_cache_hit: Any
    #: Process modes: the function and its worker settings, as cloudpickle bytes.
    spec: Any
    #: Thread and async modes: the full per-item @opero wrapper.
    thread_call: Any

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


def _chunk_size(plan: MapPlan, items: Iterable[Any]) -> int:
    if plan.timeout is not None or plan.limiter is not None:
        return 1  # per-item deadlines and per-item start times
    if plan.chunk_size:
        return int(plan.chunk_size)
    try:
        total = len(items)  # type: ignore[arg-type]
    except TypeError:
        return 64 if plan.mode == "thread" else 256
    # About four chunks per worker: enough to balance uneven items, few enough to be cheap.
    return max(1, min(4096, -(-total // (plan.workers * 4))))


def iterate(
    plan: MapPlan,
    items: Iterable[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    ordered: bool,
) -> Iterator[Any]:
    """Results (or exceptions) for ``items``, in input order or as they complete."""
    run = _Run(plan, args, kwargs, _chunk_size(plan, items))
    collector = Collector(plan.progress, items, ordered=ordered)
    try:
        for outcome in run.outcomes(enumerate(items)):
            yield from collector.add(outcome)
    finally:
        run.stop()
        collector.close()


class Collector:
    """Turns outcomes into the caller's order, and keeps the progress bar (items, failures)."""

    __slots__ = ("bar", "buffer", "failures", "next_index", "ordered")

    def __init__(self, progress: bool, items: Iterable[Any], *, ordered: bool) -> None:
        self.ordered = ordered
        self.buffer: dict[int, Any] = {}
        self.next_index = 0
        self.failures = 0
        self.bar: Any = None
        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415 - only when a bar is wanted

            total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
            self.bar = tqdm(total=total, unit="item", mininterval=0.2, dynamic_ncols=True)

    def add(self, outcome: Outcome) -> list[Any]:
        """The values that can be handed out now that ``outcome`` is in."""
        index, ok, value = outcome
        if self.bar is not None:
            self.bar.update(1)
            if not ok:
                self.failures += 1
                self.bar.set_postfix(failed=self.failures, refresh=False)
        if not self.ordered:
            return [value]
        self.buffer[index] = value
        out = []
        while self.next_index in self.buffer:
            out.append(self.buffer.pop(self.next_index))
            self.next_index += 1
        return out

    def close(self) -> None:
        """Close the bar, if any."""
        if self.bar is not None:
            self.bar.close()


class _Run:
    """The state of one map: chunks in flight, deadlines, suspects after a worker died."""

    def __init__(
        self, plan: MapPlan, args: tuple[Any, ...], kwargs: dict[str, Any], size: int
    ) -> None:
        self.plan = plan
        self.args = args
        self.kwargs = kwargs
        self.size = size
        self.process = plan.mode != "thread"
        self.limit = plan.workers if plan.timeout is not None else plan.workers * 2
        self.in_flight: dict[Future[Any], list[tuple[int, Any]]] = {}
        self.submitted_at: dict[Future[Any], float] = {}
        self.suspects: deque[tuple[int, Any]] = deque()
        self.deaths: dict[int, int] = {}
        self.ready: deque[Outcome] = deque()
        self.cancelled = False
        self.pool: Any = None
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
    def outcomes(self, source: Iterator[tuple[int, Any]]) -> Iterator[Outcome]:
        exhausted = False
        while True:
            while not exhausted and not self.suspects and len(self.in_flight) < self.limit:
                chunk = list(itertools.islice(source, self.size))
                if not chunk:
                    exhausted = True
                    break
                self._feed(chunk, source)
            if self.suspects and not self.in_flight:
                self._submit([self.suspects.popleft()])
            while self.ready:
                yield self.ready.popleft()
            if not self.in_flight:
                if exhausted and not self.suspects:
                    return
                continue
            done, _ = wait(
                list(self.in_flight), timeout=self._wait_time(), return_when=FIRST_COMPLETED
            )
            for future in done:
                self._collect(future)
            self._expire()

    def _feed(self, chunk: list[tuple[int, Any]], source: Iterator[tuple[int, Any]]) -> None:
        plan = self.plan
        if self.process and plan.should_process is not None and not plan.should_process():
            self.cancelled = True
        if self.cancelled:
            # Everything not yet started is reported, not silently dropped.
            for index, _ in itertools.chain(chunk, source):
                self.ready.append((index, False, CancelledItemError(NOT_STARTED)))
            return
        if self.process and plan.cache is not None:
            chunk = self._from_cache(chunk)
            if not chunk:
                return
        if self.process:  # counted here once; resubmissions after a death or timeout are not calls
            for _ in chunk:
                next(plan.pipeline.counters.entries)
        if self.process and plan.limiter is not None:
            index, item = chunk[0]
            delay = plan.pipeline.rate_delay((item, *self.args), self.kwargs)
            if delay > 0:
                clock.sleep(delay)
        self._submit(chunk)

    def _from_cache(self, chunk: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        cache, misses = self.plan.cache, []
        for index, item in chunk:
            key = cache.key((item, *self.args), self.kwargs)
            value = MISSING if key is MISSING else cache.get(key)
            if value is MISSING:
                misses.append((index, item))
            else:
                next(self.plan.pipeline.counters.cache_hits)
                if self.plan.on_cache_hit is not None:
                    self.plan.on_cache_hit.fire()
                self.ready.append((index, True, value))
        return misses

    def _submit(self, chunk: list[tuple[int, Any]]) -> None:
        plan = self.plan
        if self.process:
            spec: WorkerSpec = plan.spec
            self.pool = process_pool(plan.start_method, plan.workers)
            future = self.pool.submit(run_chunk_in_worker, spec.key, spec.blob, chunk, self.extra)
        else:
            self.pool = thread_pool(plan.workers)
            future = self.pool.submit(self.job.run, chunk)
        self.in_flight[future] = chunk
        self.submitted_at[future] = time.monotonic()

    # -- collecting ----------------------------------------------------------------------
    def _collect(self, future: Future[Any]) -> None:
        chunk = self.in_flight.pop(future, None)
        self.submitted_at.pop(future, None)
        if chunk is None:
            return
        try:
            payload = future.result()
        except BrokenProcessPool:
            self._worker_died(chunk)
            return
        except Exception as exc:  # the pool itself failed (e.g. could not pickle the arguments)
            for index, _ in chunk:
                self.ready.append(
                    (
                        index,
                        False,
                        ConcurrencyError(
                            f"the pool could not run this item ({type(exc).__name__}: {exc})"
                        ),
                    )
                )
            return
        outcomes = pickle.loads(payload) if self.process else payload  # noqa: S301 - our worker's bytes
        cache = self.plan.cache if self.process else None
        for index, ok, value in outcomes:
            if ok and cache is not None:
                self._store(index, value, chunk)
            self.ready.append((index, ok, value))

    def _store(self, index: int, value: Any, chunk: list[tuple[int, Any]]) -> None:
        cache = self.plan.cache
        item = next(item for i, item in chunk if i == index)
        key = cache.key((item, *self.args), self.kwargs)
        if key is not MISSING:
            next(self.plan.pipeline.counters.cache_misses)
            cache.set(cache.hashable(key), value)

    def _worker_died(self, chunk: list[tuple[int, Any]]) -> None:
        """A worker died: rebuild the pool; retry what it may have held, one item at a time."""
        lone = len(chunk) == 1 and not self.in_flight
        for index, item in chunk:
            if lone:  # alone in flight: this item is the one that killed its worker
                self.deaths[index] = self.deaths.get(index, 0) + 1
            if self.deaths.get(index, 0) > self.plan.retries:
                self.ready.append(
                    (
                        index,
                        False,
                        ConcurrencyError(
                            f"the worker process died {self.deaths[index]} times "
                            "while running this item"
                        ),
                    )
                )
            else:
                self.suspects.append((index, item))

    def _wait_time(self) -> float | None:
        if self.plan.timeout is None:
            return None
        return 0.05

    def _expire(self) -> None:
        timeout = self.plan.timeout
        if timeout is None:
            return
        now = time.monotonic()  # items really run: deadlines are real time, not opero's clock
        expired = []
        for future, chunk in self.in_flight.items():
            begun = (
                self.submitted_at[future] if self.process else self.job.started.get(chunk[0][0])  # type: ignore[union-attr]
            )
            if begun is not None and now - begun >= timeout and not future.done():
                expired.append(future)
        if not expired:
            return
        for future in expired:
            for index, _ in self.in_flight.pop(future):
                self.ready.append(
                    (index, False, TimeoutError(f"item did not finish within {timeout} s"))
                )
            self.submitted_at.pop(future, None)
        if self.process:
            # The stuck worker cannot be stopped alone: replace the pool, resubmit the rest.
            others = list(self.in_flight.values())
            self.in_flight.clear()
            self.submitted_at.clear()
            kill_process_pool(self.pool)
            for chunk in others:
                self._submit(chunk)

    def stop(self) -> None:
        """Stop feeding; cancel what has not started; kill process workers if interrupted."""
        if not self.process:
            self.job.stop.set()
        pending = [f for f in self.in_flight if not f.done()]
        for future in pending:
            future.cancel()
        if self.process and pending and self.pool is not None:
            kill_process_pool(self.pool)
        self.in_flight.clear()


def _dumps(value: Any) -> bytes:
    """pickle when it can (fast), cloudpickle when it must (lambdas, local classes)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle  # noqa: PLC0415

        packed: bytes = cloudpickle.dumps(value)
        return packed
