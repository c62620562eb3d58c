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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import final

from opero.core import clock as _clock
from opero.core.timeouts import sleep_end

__all__ = ["FakeClock", "no_waits", "use_clock"]

use_clock = _clock.using

#: ``asyncio.sleep`` as it was at import: a test may patch ``asyncio.sleep`` with
#: ``FakeClock.async_sleep``, which must not then call itself to pass the loop a turn.
_pass_turn = asyncio.sleep

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

    It also keeps virtual timers ([`call_at`][opero.testing.FakeClock.call_at]), which
    is how ``attempt_timeout=`` cuts an attempt at exactly its timeout in virtual time:
    a sleeper never wakes past a timer that is due before it; the timer fires first,
    at its own time.  A sleep that ends exactly at a timer's time wakes before the
    timer fires (an attempt that takes exactly its timeout succeeds).
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
        """Move the virtual time forward by ``seconds`` (firing the timers it passes)."""
        if seconds < 0:
            msg = "time only moves forward"
            raise ValueError(msg)
        with self._lock:
            self._now += seconds
            due = self._due()
        _run(due)

    def sleep(self, seconds: float) -> None:
        """Advance the virtual time by ``seconds`` at once (firing the timers it passes).

        In a sync attempt that opero runs on a worker thread with a timeout, the sleep
        stops at the attempt's end: the caller stops waiting exactly then, in virtual
        time.  The abandoned attempt runs on, but its sleeps no longer move the clock.
        """
        with self._lock:
            self.sleeps.append(float(seconds))
            self._now = max(self._now, sleep_end(self._now, self._now + max(0.0, seconds)))
            due = self._due()
        _run(due)

    async def async_sleep(self, seconds: float) -> None:
        """Wait (in virtual time) until the earliest-waking sleeper is this one, then wake.

        A timer due earlier than this sleeper's wake-up fires first, at its own time.
        """
        token = object()
        with self._lock:
            self.sleeps.append(float(seconds))
            target = self._now + max(0.0, seconds)
            self._pending[token] = target
        try:
            await _pass_turn(0)  # let tasks started together register first
            while True:
                with self._lock:
                    first = min(self._pending, key=self._pending.__getitem__)
                    if self._pending[first] >= target:
                        self._now = max(self._now, target)
                        return
                    timer = first if type(first) is _Timer and not first.fired else None
                    if timer is not None:
                        timer.fired = True
                        self._now = max(self._now, timer.when)
                if timer is not None:
                    timer.callback()
                await _pass_turn(0)
        finally:
            with self._lock:
                del self._pending[token]

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        """Run ``callback`` once, when virtual time reaches ``when``.

        Time reaches it through `sleep`, `advance`, an ``async_sleep`` that would wake
        later, or the timer's own ``fire()``.  A fired timer holds back ``async_sleep``
        sleepers due after it until it is cancelled, so what the callback sets off (a
        cancelled attempt, its retry) happens at the timer's time.  Cancel the returned
        timer when it is no longer needed; opero's timeouts always do.

        Examples:
            >>> clock = FakeClock()
            >>> timer = clock.call_at(2.0, lambda: print("due at", clock.now()))
            >>> clock.advance(5)
            due at 5.0
            >>> timer.cancel()
        """
        timer = _Timer(self, float(when), callback)
        with self._lock:
            self._pending[timer] = timer.when
        return timer

    def _due(self) -> list[_Timer]:
        """Timers due now, marked fired (called with the lock held; run them after)."""
        due = [
            timer
            for timer in self._pending
            if type(timer) is _Timer and not timer.fired and timer.when <= self._now
        ]
        for timer in due:
            timer.fired = True
        return due

    def _fire(self, timer: _Timer) -> None:
        with self._lock:
            if timer.fired:
                return
            timer.fired = True
            self._now = max(self._now, timer.when)
        timer.callback()

    def _forget(self, timer: _Timer) -> None:
        with self._lock:
            self._pending.pop(timer, None)

    def __enter__(self) -> FakeClock:
        self._previous.append(_clock.install(self))
        return self

    def __exit__(self, *exc_info: object) -> None:  # an error in the block passes through
        _clock.install(self._previous.pop())


@final
class _Timer:
    """A `FakeClock.call_at` timer: ``cancel()`` forgets it, ``fire()`` runs it now."""

    __slots__ = ("_clock", "callback", "fired", "when")

    def __init__(self, clock: FakeClock, when: float, callback: Callable[[], object]) -> None:
        self._clock = clock
        self.when = when
        self.callback = callback
        self.fired = False

    def cancel(self) -> None:
        """Forget the timer; it will not fire (and holds no sleeper back)."""
        self._clock._forget(self)

    def fire(self) -> None:
        """Move virtual time to the timer's time, if it is earlier, and run it (once)."""
        self._clock._fire(self)


def _run(due: list[_Timer]) -> None:
    for timer in due:
        timer.callback()


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
