"""What each failed attempt of a call was: the records ``AllFailedError.attempts`` holds.

The engine learns three things about an attempt, each in one place of
[`Run`][opero.core.run.Run]: it began (``Run.call``), it ended with an error
(``Run.ended``), a wait before the next one began (``Run.waiting``).  A `Trail`
turns them into frozen `AttemptRecord` objects.  Nothing here runs on a call's
success path: a trail is made at the first failure.

A call's first attempt made on a shell's fast path (the usual case; a call the
engine runs from its start, with ``deadline=`` for one, is timed from its first
attempt) reads no clock, so a successful call pays nothing for these records; its
record has ``start`` and ``duration`` None.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

from opero.core import clock
from opero.core.frozen import Frozen
from opero.core.steps import Wait

if TYPE_CHECKING:
    from opero.core.steps import Step

__all__ = ["BACKOFF", "RATE_LIMIT", "RETRY_AFTER", "AttemptRecord", "Trail", "noted", "pool_wait"]

_R = TypeVar("_R")

#: The wait was the backoff between attempts (or ``fallback_delay`` between candidates).
BACKOFF: Final = "backoff"
#: The wait was a server's ``Retry-After`` (longer than the backoff).
RETRY_AFTER: Final = "retry_after"
#: The wait was for a rate-limit slot.
RATE_LIMIT: Final = "rate_limit"


@final
class AttemptRecord(Frozen):
    """One failed attempt of a call: when, how long, what it raised, what came after.

    Attributes:
        attempt: the retry attempt it belonged to (1 for the first).
        candidate: the index of the ``arg_fallback`` candidate it used (None without
            ``arg_fallback``).  The candidate itself is never kept.
        start: when it began, wall-clock seconds (``time.time()``; the clock of
            ``opero.testing.FakeClock`` under one); None when not measured (the
            first attempt on the shell's fast path).
        duration: how long it ran, in seconds; None with ``start``.
        error_type: the error's class name.
        error: the error itself.
        wait: seconds the engine waited before the next attempt started (0.0: at
            once); None when none followed.
        wait_reason: ``"backoff"``, ``"retry_after"`` or ``"rate_limit"``: the longest
            part of ``wait``; None when there was no wait.

    ``repr()`` names the error's type, never its message or any argument; a record
    pickles (with its error), so it crosses process and Dask maps inside the error.

    Examples:
        >>> record = AttemptRecord(1, 0, None, None, OSError("down"), 0.5, "backoff")
        >>> record
        AttemptRecord(attempt=1, candidate=0, start=None, duration=None, error_type='OSError', wait=0.5, wait_reason='backoff')
    """  # noqa: E501 - a doctest's output line

    __slots__ = (  # noqa: RUF023 - the documented order, which repr() follows
        "attempt",
        "candidate",
        "start",
        "duration",
        "error_type",
        "error",
        "wait",
        "wait_reason",
    )

    attempt: int
    candidate: int | None
    start: float | None
    duration: float | None
    error_type: str
    error: BaseException
    wait: float | None
    wait_reason: str | None

    def __init__(  # noqa: PLR0917 - one field each, in the documented order
        self,
        attempt: int,
        candidate: int | None,
        start: float | None,
        duration: float | None,
        error: BaseException,
        wait: float | None = None,
        wait_reason: str | None = None,
    ) -> None:
        self._init(
            attempt=attempt,
            candidate=candidate,
            start=start,
            duration=duration,
            error_type=type(error).__name__,
            error=error,
            wait=wait,
            wait_reason=wait_reason,
        )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self._fields() if name != "error"
        )
        return f"AttemptRecord({shown})"

    __str__ = __repr__


#: An attempt's record before its wait is known: attempt, candidate, start, duration, error.
_Open = tuple[int, "int | None", "float | None", "float | None", BaseException]


@final
class Trail:
    """The records of one failing call so far, and the one still open (its wait not known).

    An attempt's record is closed when the next attempt begins (its wait is then
    known) or when the call ends (no wait followed).
    """

    __slots__ = ("_open", "_reason", "_waited", "_widest", "records")

    def __init__(self) -> None:
        self.records: list[AttemptRecord] = []
        self._open: _Open | None = None
        self._waited = 0.0
        self._widest = 0.0
        self._reason: str | None = None

    def ended(
        self, attempt: int, candidate: int | None, began: float | None, error: BaseException
    ) -> None:
        """An attempt that began at ``began`` (monotonic; None: unknown) raised ``error``."""
        self._close(None)
        start = duration = None
        if began is not None:
            duration = max(0.0, clock.now() - began)
            start = clock.wall() - duration
        self._open = (attempt, candidate, start, duration, error)
        self._waited, self._widest, self._reason = 0.0, 0.0, None

    def waiting(self, seconds: float, reason: str) -> None:
        """A wait of ``seconds`` before the next attempt begins (the longest names the reason)."""
        if self._open is None or seconds <= 0:
            return
        self._waited += seconds
        if seconds > self._widest:
            self._widest, self._reason = seconds, reason

    def began(self) -> None:
        """The next attempt begins: the open record's wait is the sum of the waits since."""
        self._close(self._waited)

    def close(self) -> tuple[AttemptRecord, ...]:
        """Every record, the open one closed with no wait after it (the call ends)."""
        self._close(None)
        return tuple(self.records)

    def _close(self, wait: float | None) -> None:
        opened = self._open
        if opened is None:
            return
        self._open = None
        reason = self._reason if wait else None
        self.records.append(AttemptRecord(*opened, wait, reason))


def noted(
    flow: Generator[Step, Any, _R], note: Callable[[float], None]
) -> Generator[Step, Any, _R]:
    """``flow`` (a sub-flow of the engine) passed through step by step, ``note(seconds)``
    told of each `Wait` it yields: the waits of a part that does not record them itself
    (a key pool's pick, `opero.core.pool_flow.choose`)."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            step = flow.send(sent) if thrown is None else flow.throw(thrown)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        sent = thrown = None
        if type(step) is Wait:
            note(step.seconds)
        try:
            sent = yield step
        except BaseException as exc:  # a wait cut short: the sub-flow sees it where it waited
            thrown = exc


def pool_wait(run: Any) -> str:
    """Why a key pool's pick for ``run`` (a `Run <opero.core.run.Run>`) waits: the picked
    candidate's ``candidate_rate_limit`` slot, else candidates resting on a server's
    Retry-After, else breakers cooling down (counted as backoff)."""
    if run.picked is not None:
        return RATE_LIMIT
    now = clock.now()
    pool = run.pipeline.pool
    if pool is not None and any(candidate.resting(now) for candidate in pool.candidates):
        return RETRY_AFTER
    return BACKOFF
