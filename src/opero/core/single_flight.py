"""Single-flight: concurrent callers of one missing cache key share one computation.

Without it, a cold cache under load sends every concurrent caller to the
backend at once (a "thundering herd").  Threads wait on an ``Event``; tasks of
one event loop wait on a ``Future``.

Two rules keep it from ever hanging or spreading an interrupt:

* A computation that asks for its own key again (in the same thread or task,
  or in a task it started) is re-entrant: waiting would wait for itself, so
  the inner call computes on its own.  A context variable tells, because it
  follows the thread and is copied into the tasks the leader starts.
* A leader stopped by something that is not an error of the function
  (``KeyboardInterrupt``, ``SystemExit``, cancellation) hands leadership on:
  its waiters try again instead of raising an interrupt that was not theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, final

from opero.core import forksafe
from opero.core.sentinels import MISSING

if TYPE_CHECKING:
    from opero.core.cache_step import Compute
    from opero.core.stats import Counters

__all__ = ["AsyncSingleFlight", "FlightTable", "SingleFlight"]

#: The flights this thread or task is leading, as ``(id(single_flight), key)``.
_leading: ContextVar[frozenset[tuple[int, Hashable]]] = ContextVar(
    "opero_leading", default=frozenset()
)

#: Set as a flight's outcome when its leader was interrupted: waiters try again.
_RETRY: Any = object()


@final
class Flight:
    """One computation that concurrent callers of the same key wait for."""

    __slots__ = ("done", "error", "followers", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = MISSING
        self.error: BaseException | None = None
        #: Callers told the outcome when it lands instead of waiting for it (a map's
        #: duplicate items, by index).
        self.followers: list[Any] = []


@final
class FlightTable:
    """Which keys are being computed: single-flight's bookkeeping, with no waiting in it.

    ``join`` says whether the caller leads ``key``'s flight or follows one in
    progress; the leader lands it (``land``) with a value, an error (shared with the
    followers, never cached) or nothing (interrupted: the followers try
    again).  ``SingleFlight`` waits on it for threads; a process or Dask map's
    parent follows without waiting, a batch at a time (``ParentCache``).
    """

    __slots__ = ("_flights", "_lock")

    def __init__(self) -> None:
        self._lock = forksafe.lock()
        self._flights: dict[Hashable, Flight] = {}

    def join(self, key: Hashable) -> tuple[bool, Flight]:
        """``(leads, flight)``: a new flight this caller leads, or the one in progress."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = Flight()
                return True, flight
        return False, flight

    def land(
        self,
        key: Hashable,
        flight: Flight,
        value: Any = _RETRY,
        error: BaseException | None = None,
    ) -> Flight:
        """End ``flight`` with its outcome and wake its waiters; ``flight`` back."""
        flight.value, flight.error = value, error
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.done.set()
        return flight

    def current(self, key: Hashable) -> Flight | None:
        """The flight in progress for ``key``, if any (to watch it; joining is ``join``)."""
        return self._flights.get(key)

    def forget(self) -> None:
        """Drop every flight (a forked child has none of its parent's leaders)."""
        self._flights.clear()


def _lead(job: Compute, mark: tuple[int, Hashable]) -> tuple[bool, Any]:
    """The leader's part for threads: look once more, else compute and store."""
    token = _leading.set(_leading.get() | {mark})
    try:
        layer = job.step.layer
        # A leader that finished just before we registered may have stored it.
        value = layer.get(job.key) if layer.recheck else MISSING
        if value is not MISSING:
            return False, value
        value = job()
        layer.set(job.key, value)
        return True, value
    finally:
        _leading.reset(token)


@final
class SingleFlight:
    """Makes concurrent threads asking for the same missing key run one computation.

    The first caller (the leader) computes and stores; the others wait and
    get its result, or its exception re-raised (exceptions are shared, never
    cached).
    """

    __slots__ = ("__weakref__", "counters", "table")

    def __init__(self, counters: Counters) -> None:
        self.table = FlightTable()
        #: Where a waiter that got no value is counted (``unserved``, ``failures``).
        self.counters = counters
        # A forked child has none of its parent's leaders: nobody would finish their flights.
        forksafe.on_fork(self, _forget_flights)

    def run(self, job: Compute) -> Any:
        """``job``'s value: computed by this thread, or by another (then counted as a hit)."""
        key, table = job.key, self.table
        mark = (id(self), key)
        if mark in _leading.get():
            return job()  # re-entrant: the outer computation stores the value
        while True:
            leads, flight = table.join(key)
            if leads:
                break
            try:
                flight.done.wait()
            except BaseException:
                next(self.counters.unserved)
                raise
            if flight.value is not _RETRY:
                if flight.error is not None:
                    _count_shared_error(self.counters, flight.error)
                    raise flight.error
                return job.step.hit(flight.value)
        try:
            computed, value = _lead(job, mark)
        except Exception as exc:
            table.land(key, flight, None, exc)
            raise
        except BaseException:
            table.land(key, flight)  # interrupted: the waiters try again
            raise
        table.land(key, flight, value)
        return value if computed else job.step.hit(value)


def _forget_flights(flights: SingleFlight | AsyncSingleFlight) -> None:
    if isinstance(flights, SingleFlight):
        flights.table.forget()
    else:
        flights._flights.clear()


def _count_shared_error(counters: Counters, error: BaseException) -> None:
    """A waiter re-raises its leader's error: a call that failed without calling."""
    next(counters.unserved)
    if isinstance(error, Exception):
        next(counters.failures)


@final
class AsyncSingleFlight:
    """Single-flight for tasks of one event loop.

    Flights are per loop: a task on another loop computes on its own rather
    than waiting on a future it cannot await.  A leader that is cancelled
    hands leadership on instead of cancelling its waiters.
    """

    __slots__ = ("__weakref__", "_flights", "counters")

    def __init__(self, counters: Counters) -> None:
        self._flights: dict[tuple[int, Hashable], Any] = {}  # values: asyncio.Future
        #: Where a waiter that got no value is counted (``unserved``, ``failures``).
        self.counters = counters
        forksafe.on_fork(self, _forget_flights)

    async def run(self, job: Compute) -> Any:
        """``job``'s value: computed by this task, or by another (then counted as a hit)."""
        import asyncio  # noqa: PLC0415 - loaded already when a loop runs

        from opero.core.backends.coalesce import in_flight  # noqa: PLC0415 - asyncio's

        key = job.key
        mark = (id(self), key)
        if mark in _leading.get():
            return await job()  # re-entrant: the outer computation stores it
        while True:
            slot, future = in_flight(self._flights, key)
            if future is None:
                break
            try:
                ok, value = await asyncio.shield(future)
            except BaseException:
                next(self.counters.unserved)
                raise
            if value is _RETRY:
                continue
            if not ok:
                _count_shared_error(self.counters, value)
                raise value
            return await job.step.ahit(value)
        future = self._flights[slot] = asyncio.get_running_loop().create_future()
        token = _leading.set(_leading.get() | {mark})
        try:
            computed, value = await _alead(job)
        except Exception as exc:
            future.set_result((False, exc))
            raise
        except BaseException:  # cancelled or interrupted: not the waiters' outcome
            future.set_result((True, _RETRY))
            raise
        else:
            future.set_result((True, value))
        finally:
            _leading.reset(token)
            if self._flights.get(slot) is future:
                del self._flights[slot]
        return value if computed else await job.step.ahit(value)


async def _alead(job: Compute) -> tuple[bool, Any]:
    """The leader's part for tasks: look once more, else compute and store."""
    layer, key = job.step.layer, job.key
    value = layer.get(key) if layer.recheck else MISSING
    if value is not MISSING:
        return False, value
    value = await job()
    if layer.is_async:
        await layer.aset(key, value)
    else:
        layer.set(key, value)
    return True, value
