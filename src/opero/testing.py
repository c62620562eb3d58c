"""Test helpers for code that uses opero: a fake clock and a switch that removes waits.

Retry backoff, rate limiting and cache TTL all read one clock
(`opero.core.clock`), so swapping it changes them together:

* [`no_waits`][opero.testing.no_waits] keeps real time but makes every opero wait return at once,
  so your own test suite does not sit through backoff delays.
* [`FakeClock`][opero.testing.FakeClock] replaces time itself: sleeping advances it
  instantly, and [`FakeClock.advance`][opero.testing.FakeClock.advance] moves it by hand,
  e.g. past a cache TTL.

Examples:
    >>> from opero import opero
    >>> from opero.testing import FakeClock
    >>> with FakeClock() as clock:
    ...     @opero(retries=2, min_delay=1, backoff_factor=2)
    ...     def flaky() -> str:
    ...         if len(clock.sleeps) < 2:
    ...             raise ConnectionError("not yet")
    ...         return "ok"
    ...     flaky(), clock.sleeps, clock.now()
    ('ok', [1.0, 2.0], 3.0)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import final

from opero.core import clock as _clock

__all__ = ["FakeClock", "no_waits", "use_clock"]

use_clock = _clock.using

#: Where FakeClock's wall time starts: 2026-01-01T00:00:00Z, so stored expiry times look real.
_EPOCH = 1_767_225_600.0


@final
class FakeClock:
    """Virtual time: ``sleep`` advances it instantly, ``advance`` moves it by hand.

    Sleeps are recorded in `sleeps`.  Concurrent ``async_sleep`` calls
    of tasks on one loop wake in order of their wake-up times, each moving the
    clock to its own wake-up time, as real sleeps would, so timing checks made
    from ``asyncio.gather`` see the same schedule they would see for real.
    Use it as a context manager to install it for the block.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._pending: dict[object, float] = {}
        self._previous: list[_clock.Clock] = []
        #: Every sleep requested, in seconds, in order.
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The virtual time."""
        return self._now

    def wall(self) -> float:
        """The virtual time as wall-clock seconds (for entries of persistent caches)."""
        return _EPOCH + self._now

    def advance(self, seconds: float) -> None:
        """Move the virtual time forward by ``seconds``."""
        if seconds < 0:
            msg = "time only moves forward"
            raise ValueError(msg)
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Advance the virtual time by ``seconds`` at once."""
        with self._lock:
            self.sleeps.append(float(seconds))
            self._now += max(0.0, seconds)

    async def async_sleep(self, seconds: float) -> None:
        """Wait (in virtual time) until the earliest-waking sleeper is this one, then wake."""
        token = object()
        with self._lock:
            self.sleeps.append(float(seconds))
            target = self._now + max(0.0, seconds)
            self._pending[token] = target
        try:
            await asyncio.sleep(0)  # let tasks started together register first
            while True:
                with self._lock:
                    if min(self._pending.values()) >= target:
                        self._now = max(self._now, target)
                        return
                await asyncio.sleep(0)
        finally:
            with self._lock:
                del self._pending[token]

    def __enter__(self) -> FakeClock:
        self._previous.append(_clock.install(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _clock.install(self._previous.pop())


@final
class _NoWaitClock:
    """Real time, but every wait returns immediately."""

    __slots__ = ()

    now = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        """Return at once."""

    async def async_sleep(self, seconds: float) -> None:
        """Yield to the loop once, then return."""
        await asyncio.sleep(0)


@contextmanager
def no_waits() -> Iterator[None]:
    """Inside the block, opero's backoff, fallback pauses and rate-limit waits take no time.

    Examples:
        >>> from opero.testing import no_waits
        >>> with no_waits():
        ...     pass  # call your decorated functions; retries happen back to back
    """
    with _clock.using(_NoWaitClock()):
        yield
