"""The one clock behind retry backoff, rate limiting and cache TTL.

Everything in opero that reads or spends time goes through the module-level
functions here, so a test can swap the whole notion of time at once
(``opero.testing``) instead of faking ``sleep`` while TTLs keep reading the real
clock.  The functions are rebound on swap rather than looked up through an
object, which keeps the cost on the hot path to one module attribute lookup.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from opero.core import forksafe

__all__ = [
    "Clock",
    "SystemClock",
    "async_sleep",
    "current",
    "install",
    "now",
    "sleep",
    "using",
    "wall",
]


@runtime_checkable
class Clock(Protocol):
    """What opero needs from time: a monotonic reading and two ways to wait."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences are meaningful)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    def async_sleep(self, seconds: float) -> Awaitable[None]:
        """Suspend the calling task for ``seconds`` without blocking the loop."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and ``asyncio.sleep``."""

    __slots__ = ()

    # The standard functions themselves, so the hot path pays no extra call.
    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)
    #: Wall-clock seconds since the epoch: expiry of entries that outlive the process.
    wall = staticmethod(time.time)

    @staticmethod
    async def async_sleep(seconds: float) -> None:
        """``asyncio.sleep``; asyncio is loaded by then, so ``import opero`` stays light."""
        import asyncio  # noqa: PLC0415

        await asyncio.sleep(seconds)


_lock = forksafe.lock()
_current: Clock = SystemClock()

#: Current time of the installed clock.
now: Callable[[], float] = time.monotonic
#: Blocking sleep of the installed clock.
sleep: Callable[[float], None] = time.sleep
#: Wall time of the installed clock (``time.time`` unless the clock has a ``wall()``).
wall: Callable[[], float] = time.time
#: Non-blocking sleep of the installed clock.
async_sleep: Callable[[float], Awaitable[None]] = SystemClock.async_sleep


def current() -> Clock:
    """The clock in use."""
    return _current


def install(clock: Clock) -> Clock:
    """Make ``clock`` the one every opero policy uses; return the previous one."""
    global _current, now, sleep, async_sleep, wall  # noqa: PLW0603 - rebinding is the mechanism
    if not isinstance(clock, Clock):
        msg = "clock must provide now(), sleep(seconds) and async_sleep(seconds)"
        raise TypeError(msg)
    with _lock:
        previous = _current
        _current = clock
        now, sleep, async_sleep = clock.now, clock.sleep, clock.async_sleep
        # Persistent caches store expiry as wall time; a clock may provide its own.
        wall = getattr(clock, "wall", time.time)
    return previous


@contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Use ``clock`` inside the ``with`` block, then restore the previous one."""
    previous = install(clock)
    try:
        yield clock
    finally:
        install(previous)
