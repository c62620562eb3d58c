"""What opero did, as typed frozen events, and the switch that says whether anyone listens.

The engine builds an event only when :data:`on` is true, so a process without
hooks (and without the OpenTelemetry adapter) allocates nothing for telemetry:
each emission point in the engine is one ``if events.on:`` (a module attribute
read).  :mod:`opero.instrumentation` is the public face (``set_hooks``,
``enable``, ``disable``); :mod:`opero.core.watch` builds and sends the events.

Every event names its function by ``module.qualname`` and a fallback candidate
by its index, never by value: candidates are often API keys, and arguments may
be anything.  Times are seconds (``duration``, ``seconds``) from opero's clock,
so a test on ``opero.testing.FakeClock`` sees exact values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol, final

from opero.core.correlation import correlation_id
from opero.core.frozen import Frozen

__all__ = [
    "AttemptEnded",
    "BreakerChanged",
    "CacheLookup",
    "CallEnded",
    "Event",
    "Hook",
    "MapEnded",
    "Tracer",
    "Waited",
    "correlation",
    "emit",
    "on",
]

logger = logging.getLogger("opero")

#: Why a call waited: its retry's backoff (or ``fallback_delay``), a server's
#: ``Retry-After``, or a rate-limit slot.
WaitReason = Literal["backoff", "retry_after", "rate_limit"]
#: How a call ended: its result, ``AllFailedError`` (or ``DeadlineExceeded``,
#: ``CircuitOpenError``), or an error no setting routes, passed on as it is.
Outcome = Literal["success", "failure", "error"]
#: Which call of the function an attempt was.
AttemptKind = Literal["first", "retry", "fallback"]


_set = object.__setattr__  # the events are frozen: their own __init__ sets each slot once


class Event(Frozen):
    """The fields every event has: the function and the call's correlation id (or None)."""

    __slots__ = ("correlation_id", "function")

    #: The decorated function's ``module.qualname``.
    function: str
    correlation_id: str | None


@final
class CallEnded(Event):
    """One decorated call ended (a cache hit ends without one: see `CacheLookup`)."""

    __slots__ = ("attempts", "duration", "error_type", "outcome")

    outcome: Outcome
    #: Seconds from the call's start (its first rate slot included) to its end.
    duration: float
    #: Calls of the function this call made (0 when none could start).
    attempts: int
    #: The ending error's class name (``error.type``), None on success.
    error_type: str | None

    def __init__(
        self,
        *,
        function: str,
        correlation_id: str | None,
        outcome: Outcome,
        duration: float,
        attempts: int,
        error_type: str | None,
    ) -> None:
        _set(self, "function", function)
        _set(self, "correlation_id", correlation_id)
        _set(self, "outcome", outcome)
        _set(self, "duration", duration)
        _set(self, "attempts", attempts)
        _set(self, "error_type", error_type)


@final
class AttemptEnded(Event):
    """One call of the function ended (a first attempt, a retry, or a fallback candidate)."""

    __slots__ = ("attempt", "candidate", "duration", "error_type", "kind", "ok", "started")

    #: The retry round, from 1.
    attempt: int
    #: The fallback candidate's index, None without ``arg_fallback``.
    candidate: int | None
    #: ``"first"``, ``"retry"`` (a new round) or ``"fallback"`` (another candidate).
    kind: AttemptKind
    #: The function returned (a result ``retry_if_result`` then refused included).
    ok: bool
    #: Wall-clock start (``time.time()`` or the fake clock's ``wall()``).
    started: float
    duration: float
    #: The error's class name (``error.type``), None when it returned.
    error_type: str | None

    def __init__(
        self,
        *,
        function: str,
        correlation_id: str | None,
        attempt: int,
        candidate: int | None,
        kind: AttemptKind,
        ok: bool,
        started: float,
        duration: float,
        error_type: str | None,
    ) -> None:
        _set(self, "function", function)
        _set(self, "correlation_id", correlation_id)
        _set(self, "attempt", attempt)
        _set(self, "candidate", candidate)
        _set(self, "kind", kind)
        _set(self, "ok", ok)
        _set(self, "started", started)
        _set(self, "duration", duration)
        _set(self, "error_type", error_type)


@final
class Waited(Event):
    """A call waited ``seconds`` before an attempt, for ``reason``."""

    __slots__ = ("reason", "seconds")

    reason: WaitReason
    seconds: float

    def __init__(
        self, *, function: str, correlation_id: str | None, reason: WaitReason, seconds: float
    ) -> None:
        _set(self, "function", function)
        _set(self, "correlation_id", correlation_id)
        _set(self, "reason", reason)
        _set(self, "seconds", seconds)


@final
class CacheLookup(Event):
    """The cache answered a call (``hit``) or the call computes its value (a miss)."""

    __slots__ = ("hit",)

    hit: bool

    def __init__(self, *, function: str, correlation_id: str | None, hit: bool) -> None:
        _set(self, "function", function)
        _set(self, "correlation_id", correlation_id)
        _set(self, "hit", hit)


@final
class BreakerChanged(Event):
    """A breaker changed state: a candidate's (by index) or the function's (None)."""

    __slots__ = ("candidate", "new", "old")

    candidate: int | None
    old: str
    new: str

    def __init__(
        self,
        *,
        function: str,
        correlation_id: str | None,
        candidate: int | None,
        old: str,
        new: str,
    ) -> None:
        _set(self, "function", function)
        _set(self, "correlation_id", correlation_id)
        _set(self, "candidate", candidate)
        _set(self, "old", old)
        _set(self, "new", new)


@final
class MapEnded(Event):
    """An ``@opmap`` call over a list ended: how many items, how many failed."""

    __slots__ = ("duration", "failures", "items", "mode")

    mode: str
    items: int
    failures: int
    duration: float

    def __init__(
        self,
        *,
        function: str,
        correlation_id: str | None,
        mode: str,
        items: int,
        failures: int,
        duration: float,
    ) -> None:
        _set(self, "function", function)
        _set(self, "correlation_id", correlation_id)
        _set(self, "mode", mode)
        _set(self, "items", items)
        _set(self, "failures", failures)
        _set(self, "duration", duration)


class Hook(Protocol):
    """A receiver of events: any callable taking one `Event`; what it returns is ignored."""

    def __call__(self, event: Event, /) -> object: ...


class Tracer(Protocol):
    """What opens a call's span before the call runs (the OpenTelemetry adapter).

    ``start`` makes the span current (so the function's own spans nest under it)
    and returns what ``end`` needs; both run in the caller's thread or task.
    """

    def start(self, function: str, breaker: str | None) -> Any:
        """Open the call's span and make it current (``breaker``: the function's breaker state)."""

    def end(self, handle: Any, event: CallEnded) -> None:
        """Close it with the call's outcome."""

    def hit(self, function: str) -> None:
        """A call the cache answered: a short span of its own."""


#: True while anyone listens (hooks set, or a tracer): the engine's one check.
on: bool = False
#: The hooks every event goes to, in order.
hooks: tuple[Hook, ...] = ()
#: The span opener, or None.
tracer: Tracer | None = None
#: The current call's correlation id (``opero.correlation_id``), read as each event is built.
correlation: Callable[[], str | None] = correlation_id


def emit(event: Event) -> None:
    """Hand ``event`` to every hook; a hook that raises is logged (by its type) and skipped."""
    for hook in hooks:
        try:
            hook(event)
        except Exception:  # a broken hook must never break the call it reports on
            logger.warning(
                "opero: instrumentation hook %s raised on %s",
                type(hook).__qualname__,
                type(event).__name__,
                exc_info=True,
            )
