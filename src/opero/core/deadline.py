"""The time left for the attempt in progress, for code that can pass a timeout on.

A call with ``attempt_timeout=`` or ``deadline=`` runs each attempt inside
[`attempt_bound`][opero.core.deadline.attempt_bound], which puts the attempt's end in a
context variable.  [`remaining`][opero.remaining] reads it, so the function itself can
hand the time left to its own client (``httpx.get(url, timeout=opero.remaining())``):
that is the one way to stop a sync attempt for real, since a thread cannot be cut from
outside.

The end is a reading of [`opero.core.clock.now`][opero.core.clock], so a
[`FakeClock`][opero.testing.FakeClock] governs it too.  A context variable follows the
attempt wherever opero runs it: into the asyncio task it runs in, and onto the worker
thread of a sync attempt with a timeout (``contextvars.copy_context()``).  A new
``threading.Thread`` started by the function itself does not copy it before
Python 3.14; copy the context for it (``contextvars.copy_context().run``) if it needs it.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import final

from opero.core import clock as _clock

__all__ = ["attempt_bound", "backstop_grace", "enter_bound", "leave_bound", "remaining"]

#: The end of the current attempt in clock time, or None outside any bounded opero call.
_attempt_end: ContextVar[float | None] = ContextVar("opero_attempt_end", default=None)


def remaining() -> float | None:
    """Seconds left for the current attempt, or ``None`` outside any bounded opero call.

    Inside a call with ``attempt_timeout=`` or ``deadline=`` it is the time until the
    earlier of the two ends (never negative: ``0.0`` once it has passed).  Pass it on
    to whatever the attempt waits for, so the attempt ends when opero stops waiting.

    Examples:
        >>> import opero
        >>> opero.remaining() is None  # not inside a bounded call
        True
        >>> from opero.core.deadline import attempt_bound
        >>> from opero.testing import FakeClock
        >>> with FakeClock(start=100.0) as clock, attempt_bound(102.5):
        ...     clock.advance(1)
        ...     opero.remaining()
        1.5
    """
    end = _attempt_end.get()
    if end is None:
        return None
    left = end - _clock.now()
    return left if left > 0.0 else 0.0


def enter_bound(until: float) -> Token[float | None] | None:
    """Start a bound ending at ``until``; None if an enclosing one ends no later.

    The two-call form of `attempt_bound` for code on the hot path of an attempt, which
    saves the context manager's object (and, inside an equal or earlier bound, the
    context variable's write); hand what it returns to `leave_bound`.
    """
    outer = _attempt_end.get()
    if outer is not None and outer <= until:
        return None
    return _attempt_end.set(until)


def leave_bound(token: Token[float | None] | None) -> None:
    """End the bound `enter_bound` started (nothing if it started none)."""
    if token is not None:
        _attempt_end.reset(token)


@final
class attempt_bound:  # noqa: N801 - used as a function: ``with attempt_bound(until):``
    """Inside the block, the current attempt ends at ``until`` (clock time).

    Bounds nest by taking the earlier end: an opero call inside the attempt of another
    keeps the outer end if it comes first, since the outer attempt is cut then anyway.
    ``None`` adds no bound of its own (an unbounded inner call still sees the outer
    end).  The previous value comes back on exit, in threads and asyncio tasks alike
    (each has its own context).  A class rather than ``@contextmanager``: it runs on
    every bounded attempt, and a generator costs a microsecond more.

    Examples:
        >>> from opero.core.deadline import attempt_bound, remaining
        >>> from opero.testing import FakeClock
        >>> with FakeClock() as clock, attempt_bound(5.0):
        ...     with attempt_bound(9.0):
        ...         remaining()
        5.0
    """

    __slots__ = ("_token", "_until")

    def __init__(self, until: float | None) -> None:
        self._until = until
        self._token: Token[float | None] | None = None

    def __enter__(self) -> None:
        if self._until is not None:
            self._token = enter_bound(self._until)

    def __exit__(self, *exc_info: object) -> None:  # an error in the block passes through
        token, self._token = self._token, None
        leave_bound(token)


def backstop_grace(timeout: float) -> float:
    """How long past its deadline a map waits before it cuts an item still running (process,
    thread and Dask maps alike).

    The item's own engine ends it at its deadline with every error so far (CONTRACT 30),
    but only between attempts: a backoff that wakes late on a busy machine, or the trip
    of the result back from a worker, lands a moment past the deadline, and a cut at the
    deadline itself replaced that DeadlineExceeded by one holding no error (1 run in 5
    of a 0.5 s process map under load).  Only an item stuck in one attempt meets the cut.
    """
    return min(timeout / 2, 1.0)
