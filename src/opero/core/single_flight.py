"""Single-flight: concurrent callers of one missing cache key share one computation.

Without it, a cold cache under load sends every concurrent caller to the
backend at once (a "thundering herd").  Threads wait on an ``Event``; tasks of
one event loop wait on a ``Future``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, final

from opero.core.backends.memory import MISSING

if TYPE_CHECKING:
    from opero.core.cache import CacheLayer

__all__ = ["AsyncSingleFlight", "SingleFlight"]


@final
class _Flight:
    """One computation that concurrent callers of the same key wait for."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = MISSING
        self.error: BaseException | None = None


@final
class SingleFlight:
    """Makes concurrent threads asking for the same missing key run one computation.

    The first caller (the leader) computes and stores; the others wait and
    get its result, or its exception re-raised (exceptions are shared, never
    cached).
    """

    __slots__ = ("_flights", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def run(self, layer: CacheLayer, key: Hashable, compute: Callable[[], Any]) -> tuple[bool, Any]:
        """``(computed_here, value)`` for ``key``: computed by this thread or by another."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return False, flight.value
        try:
            # A leader that finished just before we registered may have stored it.
            value = layer.get(key) if layer.recheck else MISSING
            computed = value is MISSING
            if computed:
                value = compute()
                layer.set(key, value)
            flight.value = value
            return computed, value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


#: Set as a flight's result when its leader was cancelled: waiters try again.
_RETRY: Any = object()


@final
class AsyncSingleFlight:
    """Single-flight for tasks of one event loop.

    Flights are per loop: a task on another loop computes on its own rather
    than waiting on a future it cannot await.  A leader that is cancelled
    hands leadership on instead of cancelling its waiters.
    """

    __slots__ = ("_flights",)

    def __init__(self) -> None:
        self._flights: dict[tuple[int, Hashable], Any] = {}  # values: asyncio.Future

    async def run(
        self, layer: CacheLayer, key: Hashable, compute: Callable[[], Any]
    ) -> tuple[bool, Any]:
        """``(computed_here, value)`` for ``key``; ``compute`` returns an awaitable."""
        import asyncio  # noqa: PLC0415 - loaded already when a loop runs

        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        while True:
            future = self._flights.get(slot)
            if future is None or future.get_loop() is not loop:
                break
            ok, value = await asyncio.shield(future)
            if value is _RETRY:
                continue
            if not ok:
                raise value
            return False, value
        future = loop.create_future()
        self._flights[slot] = future
        try:
            value = layer.get(key) if layer.recheck else MISSING
            computed = value is MISSING
            if computed:
                value = await compute()
                if layer.is_async:
                    await layer.aset(key, value)
                else:
                    layer.set(key, value)
        except asyncio.CancelledError:
            future.set_result((True, _RETRY))
            raise
        except BaseException as exc:
            future.set_result((False, exc))
            raise
        else:
            future.set_result((True, value))
            return computed, value
        finally:
            if self._flights.get(slot) is future:
                del self._flights[slot]
