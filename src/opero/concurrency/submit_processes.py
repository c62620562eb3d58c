"""``mode="process"`` and ``"async_process"``: chunks run in a local pool of worker processes.

A worker that dies breaks the whole pool (``BrokenProcessPool`` for every
chunk it held); the pool registry builds a fresh one for the next chunk.  A
death is charged to an item only when its chunk was the pool's only one, which
is how the map run finds the item that kills its worker.  A stuck worker
cannot be stopped alone either: a late chunk costs the pool, and the chunks in
flight with it are sent again to a fresh one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from opero.concurrency.pool import kill_process_pool, process_pool
from opero.concurrency.submit import Lost
from opero.concurrency.worker import run_chunk_in_worker

if TYPE_CHECKING:
    from opero.concurrency.chunks import Chunk
    from opero.concurrency.plan import MapPlan
    from opero.concurrency.shipping import Shipment

__all__ = ["ProcessSubmitter"]

_DIED = "the worker process died {deaths} times while running this item"


class ProcessSubmitter:
    """Sends a process map's chunks to a local process pool (see `Submitter`)."""

    __slots__ = (
        "held_when_broken",
        "limit",
        "owner",
        "plan",
        "pool",
        "pool_of",
        "shipment",
        "submitted_at",
        "tick",
        "workers",
    )

    def __init__(self, plan: MapPlan, shipment: Shipment, workers: int) -> None:
        self.plan = plan
        self.shipment = shipment
        self.workers = workers
        self.limit: int | None = None
        self.tick = 0.05 if plan.timeout is not None else None
        #: A map with a timeout may have to kill its pool: it gets one of its own.
        self.owner = id(plan) if plan.timeout is not None else None
        self.pool: Executor | None = None
        #: The pool each chunk went to, and how many chunks each broken pool held when
        #: it broke (a death is charged only to an item that ran alone).
        self.pool_of: dict[Future[Any], Executor] = {}
        self.held_when_broken: dict[int, int] = {}
        self.submitted_at: dict[Future[Any], float] = {}

    def submit(self, chunk: Chunk, *, alone: bool = False) -> tuple[Future[Any], Chunk] | None:
        packed = self.shipment.pack(chunk)
        if packed is None:
            return None
        chunk, task = packed
        plan = self.plan
        warm = plan.spec if plan.timeout is not None else None
        for last_try in (False, True):
            self.pool = pool = process_pool(
                plan.start_method, self.workers, warm=warm, owner=self.owner
            )
            try:
                future = pool.submit(run_chunk_in_worker, *task)
                break
            except (BrokenProcessPool, RuntimeError, OSError, EOFError):
                # The pool broke under us: drop it; the chunk goes to a fresh one, uncharged.
                if last_try:
                    raise
                kill_process_pool(pool)
        self.pool_of[future] = pool
        self.submitted_at[future] = time.monotonic()
        return future, chunk

    def result(self, future: Future[Any]) -> tuple[list[Any], list[int]]:
        payload = future.result()
        self._forget(future)
        return self.shipment.unpack_bytes(payload)

    def broken(self, future: Future[Any], error: Exception) -> Lost | None:
        pool = self.pool_of.get(future)
        self._forget(future)
        if not isinstance(error, BrokenProcessPool):
            return None
        key = id(pool)
        if key not in self.held_when_broken:
            self.held_when_broken[key] = 1 + sum(p is pool for p in self.pool_of.values())
        alone = self.held_when_broken[key] == 1
        return Lost(alone=alone, tolerance=self.plan.retries, message=_DIED)

    def _forget(self, future: Future[Any]) -> None:
        self.pool_of.pop(future, None)
        self.submitted_at.pop(future, None)

    def expire(
        self, in_flight: Mapping[Future[Any], Chunk], timeout: float
    ) -> tuple[list[Future[Any]], list[Future[Any]]]:
        """Late chunks by when they were sent; the rest go again, to a fresh pool."""
        now = time.monotonic()  # items really run: deadlines are real time, not opero's clock
        expired = [
            future
            for future in in_flight
            if now - self.submitted_at.get(future, now) >= timeout and not future.done()
        ]
        if not expired:
            return [], []
        late = set(expired)
        others = [future for future in in_flight if future not in late]
        self.pool_of.clear()
        self.submitted_at.clear()
        if self.pool is not None:
            kill_process_pool(self.pool)
        return expired, others

    def stop(self, in_flight: Iterable[Future[Any]], *, interrupted: bool) -> None:
        """Interrupted (Ctrl-C, cancellation), the workers are killed at once.

        A consumer that merely leaves an ``imap`` lets running chunks finish,
        since other maps may share the pool.
        """
        futures = list(in_flight)
        if interrupted and self.pool is not None and futures:
            kill_process_pool(self.pool)  # the pool fails what was pending; nothing to cancel
        else:
            for future in futures:
                future.cancel()
        self.pool_of.clear()
