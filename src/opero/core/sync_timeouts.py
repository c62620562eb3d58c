"""Sync attempts with a timeout: run on a worker thread, abandoned at the timeout.

A sync attempt cannot be cut: Python has no way to stop a thread.  It runs on a
worker thread (the caller's context variables copied, so `opero.remaining()` and
tracing context work there) and the caller stops waiting at the timeout with a
``TimeoutError``.  The abandoned attempt **keeps running** until it returns by itself;
its result or error is dropped.  Passing `opero.remaining()` on to the client the
attempt waits for is what ends it on time.

Abandoned attempts still running are counted per function (`TimeoutRunner`).  Once
``bound`` of them run, a new attempt does not start until one of them ends, waiting
no longer than its own timeout, and fails with a ``TimeoutError`` without starting if
none ends in time; one WARNING on the ``"opero"`` logger says the bound was reached.
Waiting keeps both promises a production caller relies on: no call outlives its
timeout, and a function whose upstream hangs holds about ``bound`` threads more than
it has callers in flight, not one per call.  (Running the attempt inline instead would
break the first; starting it anyway, the second.)

On a clock with virtual timers (`FakeClock`) the caller stops waiting at the timeout
in virtual time: a sleep on that clock inside the attempt stops at the attempt's end
(`sleep_end`).  A real block (a socket, a lock) is waited for in real seconds, and
virtual time then reads the attempt's end.  The wait for a free slot is in real time.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar, cast, final

from opero.core import clock as _clock
from opero.core import forksafe
from opero.core.attempt_threads import ThreadAttempt, run_on_a_thread, sleep_end
from opero.core.validate import integer
from opero.utils.logging import fields

__all__ = [
    "DEFAULT_BOUND",
    "TimeoutRunner",
    "VirtualTimer",
    "call_within",
    "runner_for",
    "sleep_end",
    "timed_out",
    "virtual_timers",
]

logger = logging.getLogger("opero")

T = TypeVar("T")

#: Abandoned sync attempts of one function that may still run before new ones wait.
DEFAULT_BOUND = 8


class VirtualTimer(Protocol):
    """A timer of a virtual clock (``clock.call_at(when, callback)``), as FakeClock has."""

    def cancel(self) -> None:
        """Forget the timer (it does nothing if it already fired)."""

    def fire(self) -> None:
        """Move virtual time to the timer's time if it is earlier, and run it (once)."""


def virtual_timers() -> Callable[[float, Callable[[], None]], VirtualTimer] | None:
    """The installed clock's ``call_at`` if it keeps virtual timers (FakeClock), else None."""
    return cast(
        "Callable[[float, Callable[[], None]], VirtualTimer] | None",
        getattr(_clock.current(), "call_at", None),
    )


def timed_out(seconds: float) -> TimeoutError:
    """The error of an attempt cut or abandoned after ``seconds`` (no argument values)."""
    return TimeoutError(f"attempt timed out after {seconds:.3g}s")


@final
class TimeoutRunner:
    """One function's sync attempts with a timeout, and the count of abandoned ones.

    Args:
        bound: how many abandoned attempts may still run before a new attempt waits
            for one of them to end.
        name: the function's name, for the warning (never an argument value).

    It pickles as its settings: a copy starts with no abandoned attempts, as does a
    forked child, whose parent's threads did not come with it.
    """

    __slots__ = ("__weakref__", "_abandoned", "_bound", "_freed", "_name", "_warned")

    def __init__(self, bound: int = DEFAULT_BOUND, name: str = "a function") -> None:
        self._bound = integer("bound", bound)
        self._name = name
        self._reset()
        forksafe.on_fork(self, TimeoutRunner._reset)

    def _reset(self) -> None:
        self._freed = threading.Condition(forksafe.lock())
        self._abandoned = 0
        self._warned = False

    def __reduce__(self) -> tuple[type[TimeoutRunner], tuple[int, str]]:
        return (type(self), (self._bound, self._name))

    def __repr__(self) -> str:
        return f"TimeoutRunner(bound={self._bound}, abandoned={self._abandoned})"

    @property
    def bound(self) -> int:
        """How many abandoned attempts may run before new ones wait."""
        return self._bound

    @property
    def abandoned(self) -> int:
        """Abandoned attempts of this function still running now."""
        return self._abandoned

    def call_within(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        seconds: float,
    ) -> T:
        """``fn(*args, **kwargs)`` on a worker thread; ``TimeoutError`` after ``seconds``.

        The attempt sees its end through `opero.remaining()`.  Its result or error is
        the caller's if it ends in time; otherwise the caller gets a ``TimeoutError``
        and the attempt runs on, abandoned.  ``seconds <= 0`` starts nothing.
        """
        if not seconds > 0:
            raise timed_out(seconds)
        stop = time.monotonic() + seconds
        attempt = ThreadAttempt(self, _clock.now() + seconds)
        if self._abandoned >= self._bound:
            self._wait_for_a_slot(stop, seconds)
        timers = virtual_timers()
        timer = None if timers is None else timers(attempt.until, attempt.abandon)
        try:
            run_on_a_thread(partial(contextvars.copy_context().run, attempt.run, fn, args, kwargs))
            if not attempt.done.wait(max(0.0, stop - time.monotonic())) and timer is not None:
                timer.fire()  # a real block on a virtual clock: virtual time reaches the end
        except BaseException:
            attempt.abandon()  # KeyboardInterrupt in the caller: the attempt is on its own
            raise
        finally:
            if timer is not None:
                timer.cancel()
        attempt.abandon()
        if attempt.abandoned:
            raise timed_out(seconds)
        return cast("T", attempt.outcome())

    def _wait_for_a_slot(self, stop: float, seconds: float) -> None:
        with self._freed:
            if self._freed.wait_for(
                lambda: self._abandoned < self._bound, timeout=max(0.0, stop - time.monotonic())
            ):
                return
        msg = (
            f"attempt not started: {self._bound} abandoned attempts of {self._name} are still "
            f"running and none ended within the {seconds:.3g}s timeout"
        )
        raise TimeoutError(msg)

    def _hold(self) -> bool:
        """Count one more abandoned attempt; True if that reaches the bound (warn once)."""
        with self._freed:
            self._abandoned += 1
            if self._abandoned < self._bound or self._warned:
                return False
            self._warned = True
            return True

    def _release(self) -> None:
        with self._freed:
            self._abandoned -= 1
            if self._abandoned < self._bound:
                self._warned = False
                self._freed.notify()

    def _warn(self) -> None:
        logger.warning(
            "opero: %d abandoned attempts of %s are still running after their timeout; new "
            "attempts wait for one to end, up to their own timeout",
            self._bound,
            self._name,
            extra=fields(self._name),
        )


#: Each function's runner, for callers that hold none of their own; weak, so a
#: function that goes away takes its count with it.
_runners: weakref.WeakKeyDictionary[Any, TimeoutRunner] = weakref.WeakKeyDictionary()
_runners_lock = forksafe.lock()
#: For callables that cannot be weakly referenced: one runner between them.
_shared_runner = TimeoutRunner(name="a callable without weak references")


def runner_for(fn: Callable[..., Any]) -> TimeoutRunner:
    """The `TimeoutRunner` of ``fn`` (of its function, for a bound method), made on first use."""
    key = getattr(fn, "__func__", fn)
    try:
        runner = _runners.get(key)
    except TypeError:  # not hashable
        return _shared_runner
    if runner is not None:
        return runner
    name = getattr(key, "__qualname__", None) or type(key).__qualname__
    with _runners_lock:
        try:
            return _runners.setdefault(key, TimeoutRunner(name=name))
        except TypeError:  # no weak references
            return _shared_runner


def call_within(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    seconds: float,
    runner: TimeoutRunner | None = None,
) -> T:
    """`TimeoutRunner.call_within` with ``runner``, or with ``fn``'s own (`runner_for`)."""
    return (runner or runner_for(fn)).call_within(fn, args, kwargs, seconds)
