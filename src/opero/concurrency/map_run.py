"""One map in progress: chunks in flight, deadlines, dead workers, the outcomes handed out.

Every item ends with exactly one outcome: its result, its exception,
``TimeoutError``, ``CancelledItemError`` or ``ConcurrencyError``.  Where a
chunk runs is the submitter's business (``submit.py``); this loop is the same
for threads, local processes and Dask.  When a worker dies, the items it may
have held are run again one at a time, alone, so an item that kills its worker
is found and charged, and innocent ones are not.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any

from opero.concurrency.chunks import NOT_STARTED, Batch, Chunk, failed_batch, pool_failure
from opero.core.correlation import correlation_id
from opero.core.deadline import backstop_grace
from opero.exceptions import CancelledItemError, ConcurrencyError, DeadlineExceeded

if TYPE_CHECKING:
    from opero.concurrency.parent import ParentSide
    from opero.concurrency.submit import Lost, Submitter

__all__ = ["MapCancelledError", "MapRun"]


class MapCancelledError(Exception):
    """Raised inside the map loop when another thread cancelled it."""


class MapRun:
    """The state of one map: chunks in flight, suspects after a worker died, outcomes ready."""

    def __init__(
        self,
        submitter: Submitter,
        ready: deque[Batch],
        *,
        size: int,
        limit: int,
        timeout: float | None,
        parent: ParentSide | None = None,
        backlog: Callable[[], int] = lambda: 0,
        cancel: threading.Event | None = None,
        patient: bool = False,
    ) -> None:
        self.submitter = submitter
        #: Outcomes to hand out, in the order they became known (shared with the submitter's
        #: shipment, which puts the items it could not send here).
        self.ready = ready
        #: Items per chunk, and the most chunks in flight.
        self.size = size
        self.limit = limit
        self.timeout = timeout
        #: Remote maps: the outer layers kept in this process (cache, rate limit, ...).
        self.parent = parent
        #: Results waiting behind a slow early item; reading stops at ``limit * size``.
        self.backlog = backlog
        self.backlog_limit = limit * size
        #: Set from another thread to stop the map (async_process cancellation).
        self.cancel = cancel
        #: The caller takes the results only at the end, in input order, and shows no
        #: progress (``f(items)``): the run may wait for every chunk in flight at once.
        self.patient = patient
        self.in_flight: dict[Future[Any], Chunk] = {}
        self.suspects: deque[tuple[int, Any]] = deque()
        self.deaths: dict[int, int] = {}
        self.cancelled = False
        self.consumed = 0

    def batches(self, source: Iterable[Any]) -> Iterator[Batch]:
        """The map's batches as they come, reading ``source`` only as far as it must."""
        reader = _Reader(source, self.size)
        read = reader.read
        exhausted = False
        while True:
            while (
                not exhausted
                and not self.suspects
                and len(self.in_flight) < self.limit
                and self.backlog() < self.backlog_limit
            ):
                items = read()
                if not items:
                    exhausted = True
                    break
                start = self.consumed
                self.consumed += len(items)
                self._feed((range(start, self.consumed), items))
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
            exhausted = exhausted or reader.done()
            # A patient caller wants nothing before the end: once every item is sent,
            # wake once for the lot, not once per chunk (a thread map's main cost).
            everything = self.patient and exhausted and not self.suspects
            done, _ = wait(
                list(self.in_flight),
                timeout=self._wait_time(),
                return_when=ALL_COMPLETED if everything else FIRST_COMPLETED,
            )
            if self.cancel is not None and self.cancel.is_set():
                raise MapCancelledError
            # A patient run takes the lot in the order sent: no reordering to do.  Others
            # take them as they come (completion order is what an unordered run returns).
            for future in [f for f in self.in_flight if f in done] if self.patient else done:
                self._collect(future)
            self._expire()
            yield from self._drain()  # hand results out before reading further input

    def _drain(self) -> Iterator[Batch]:
        while self.ready:
            batch = self.ready.popleft()
            yield batch
            if self.parent is not None:
                yield from self.parent.shared(batch)

    def _feed(self, chunk: Chunk) -> None:
        parent = self.parent
        if parent is not None and not parent.may_start():
            self.cancelled = True
        if self.cancelled:
            # Everything not yet started is reported, not silently dropped, a chunk
            # at a time, so an endless input stays lazy.
            self.ready.append(failed_batch(chunk[0], lambda: CancelledItemError(NOT_STARTED)))
            return
        if parent is not None:
            hits, chunk = parent.admit(chunk)
            if hits is not None:
                self.ready.append(hits)
            if not chunk[0]:
                return
        self._submit(chunk)

    def _submit(self, chunk: Chunk, *, alone: bool = False) -> None:
        sent = self.submitter.submit(chunk, alone=alone)
        if sent is not None:
            future, chunk = sent
            self.in_flight[future] = chunk

    def _collect(self, future: Future[Any]) -> None:
        chunk = self.in_flight.pop(future, None)
        if chunk is None:
            return
        indices, items = chunk
        try:
            values, failed = self.submitter.result(future)
        except Exception as exc:
            lost = self.submitter.broken(future, exc)
            if lost is not None:
                self._lost(chunk, lost)
                return
            self.ready.append(pool_failure(indices, exc))
            return
        if self.parent is not None:
            self.parent.settle(items, values, failed)
        self.ready.append((indices, values, failed))

    def _lost(self, chunk: Chunk, lost: Lost) -> None:
        """A chunk went down with its worker: charge the item that ran alone, retry the rest.

        An item is charged once it has taken down more workers of its own than
        ``lost.tolerance``; the others are run again one at a time, alone.
        """
        lone = lost.alone and len(chunk[0]) == 1
        for index, item in zip(*chunk, strict=True):
            if lone:  # alone in flight: this item is the one that killed its worker
                self.deaths[index] = self.deaths.get(index, 0) + 1
            deaths = self.deaths.get(index, 0)
            if deaths > lost.tolerance:
                problem = ConcurrencyError(lost.message.format(deaths=deaths))
                self.ready.append(([index], [problem], [0]))
            else:
                self.suspects.append((index, item))

    def _wait_time(self) -> float | None:
        tick = self.submitter.tick
        if tick is not None:
            return tick
        return None if self.cancel is None else 0.1

    def _expire(self) -> None:
        """Fail the chunks past their deadline; send again what letting them go displaced."""
        timeout = self.timeout
        if timeout is None or not self.in_flight:
            return
        expired, again = self.submitter.expire(self.in_flight, timeout + backstop_grace(timeout))
        if not expired:
            return
        message = f"item did not finish within {timeout} s"
        carried = correlation_id()  # the map's caller's (this runs in its thread, or a copy)
        for future in expired:
            indices, _ = self.in_flight.pop(future)
            self.ready.append(
                failed_batch(indices, lambda: DeadlineExceeded(message, correlation_id=carried))
            )
        for chunk in [self.in_flight.pop(future) for future in again]:
            self._submit(chunk)

    def stop(self, *, interrupted: bool) -> None:
        """Stop feeding and cancel what has not started (interrupted: kill what runs)."""
        self.submitter.stop(self.in_flight, interrupted=interrupted)
        self.in_flight.clear()


class _Reader:
    """Reads ``source`` a chunk at a time: slices of a list or tuple (a copy in C), else
    ``size`` items from its iterator; a list or tuple also says when it is used up."""

    __slots__ = ("items", "iterator", "position", "size")

    def __init__(self, source: Iterable[Any], size: int) -> None:
        self.size = size
        self.position = 0
        self.items: list[Any] | tuple[Any, ...] | None = None
        self.iterator: Iterator[Any] | None = None
        if type(source) is list or type(source) is tuple:
            self.items = source
        else:
            self.iterator = iter(source)

    def read(self) -> list[Any]:
        items = self.items
        if items is None:
            return list(itertools.islice(self.iterator or (), self.size))
        chunk = items[self.position : self.position + self.size]
        self.position += len(chunk)
        return chunk if type(chunk) is list else list(chunk)

    def done(self) -> bool:
        """Known to be used up (an iterator is known only once a read came back empty)."""
        return self.items is not None and self.position >= len(self.items)
