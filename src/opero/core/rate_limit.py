"""Rate limiting: calls spaced evenly, with an optional burst.

The limiter is a GCRA (generic cell rate algorithm, the token bucket written
as one timestamp): each call reserves the next free start time under a lock
and is told how long to wait for it.  It never sleeps itself, so the same
limiter works from threads, from ``asyncio.gather`` and from several event
loops over its lifetime: the sync shell sleeps with ``time.sleep``, the async
shell with ``asyncio.sleep``.  Because reservations are absolute times,
oversleeping by a scheduler tick never accumulates into drift.

A server that answers 429 with ``Retry-After`` speaks for the whole scope, so
``pause_for(seconds, now)`` holds every limiter's next start until the pause
ends: concurrent callers wait it out instead of walking into the same refusal.
After a pause, starts resume one interval apart (the burst is not spent at
once on a server that has just refused us), and the burst refills as usual.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Final, Protocol, final

from opero.core import forksafe, validate
from opero.core.keys import freeze
from opero.core.owned import Owned
from opero.exceptions import ConfigurationError

__all__ = [
    "SCOPES",
    "Limiter",
    "PerArgsLimiter",
    "RateLimit",
    "check_rate",
    "check_settings",
    "pausing",
]

#: The scope kinds with a meaning of their own; any other string names a shared group.
SCOPES: Final = ("per_function", "global", "per_args")

#: Idle per-argument limiters are pruned once there are more than this many.
_PRUNE_AT: Final = 1024


def check_rate(
    rate: object, burst: object, name: str = "rate_limit", *, each: str = "", hint: str = ""
) -> None:
    """``name`` (calls per second) and ``name_burst``, as every limiter takes them."""
    # The slowest rate still spaces calls by a wait the platform can sleep.
    validate.number(
        name,
        rate,
        minimum=1 / validate.MAX_SECONDS,
        maximum=math.inf,
        kind=f"a finite number of calls per second{each}",
        hint=hint or " (0.5 = one call every 2 s)",
    )
    validate.integer(f"{name}_burst", burst)


def check_settings(
    rate: float | None, burst: int, scope: str, backend: str, backend_config: object
) -> None:
    """Check the rate-limit settings by value alone (also when ``rate_limit`` is None)."""
    if rate is not None:
        check_rate(rate, burst)
    else:
        validate.integer("rate_limit_burst", burst)
    if not isinstance(scope, str) or not scope.strip():
        msg = (
            "rate_limit_scope must be 'per_function', 'global', 'per_args' or a group name, "
            f"got {validate.show(scope)}"
        )
        raise ConfigurationError(msg)
    if scope.startswith("per_") and scope not in SCOPES:
        msg = (
            f"unknown rate_limit_scope {validate.show(scope)}: the scope kinds are "
            "'per_function', 'global' and 'per_args' (any other name is a shared group)"
        )
        raise ConfigurationError(msg)
    validate.choice("rate_limit_backend", backend, ("memory", "redis"))
    if backend_config is not None and not isinstance(backend_config, dict):
        msg = f"rate_limit_backend_config must be a dict, got {type(backend_config).__name__}"
        raise ConfigurationError(msg)


@final
class Limiter(Owned):
    """Even spacing at ``rate`` calls per second, letting ``burst`` calls start at once.

    Examples:
        >>> limiter = Limiter(rate=10)
        >>> limiter.reserve(now=0.0), limiter.reserve(now=0.0), limiter.reserve(now=0.25)
        (0.0, 0.1, 0.0)
    """

    __slots__ = ("_lock", "_owner", "_tat", "burst", "interval", "rate")

    def __init__(self, rate: float, burst: int = 1) -> None:
        check_rate(rate, burst)
        self.rate = float(rate)
        self.burst = burst
        #: Seconds between two starts.
        self.interval = 1.0 / self.rate
        self._lock = forksafe.lock()
        self._tat = -math.inf  # theoretical arrival time of the next call

    def reserve(self, now: float) -> float:
        """Claim the next start time; return the seconds to wait for it (0 if none)."""
        tolerance = (self.burst - 1) * self.interval
        with self._lock:
            tat = max(self._tat, now)
            start = max(now, tat - tolerance)
            self._tat = tat + self.interval
        return start - now

    def take(self, now: float) -> bool:
        """Claim a start at ``now`` if one is free (no wait), else claim nothing."""
        tolerance = (self.burst - 1) * self.interval
        with self._lock:
            tat = max(self._tat, now)
            if tat - tolerance > now:
                return False
            self._tat = tat + self.interval
        return True

    def reserve_for(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> float:
        """Same as :meth:`reserve`: a shared limiter ignores the call's arguments."""
        return self.reserve(now)

    async def areserve_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float
    ) -> float:
        """:meth:`reserve_for` for async callers: in-process, it never blocks."""
        return self.reserve(now)

    def next_start(self, now: float) -> float:
        """When the next call could start, without reserving it (``now`` if at once)."""
        return max(now, self._tat - (self.burst - 1) * self.interval)

    def idle(self, now: float) -> bool:
        """True when a fresh limiter would behave the same (nothing reserved ahead)."""
        return self._tat <= now

    def pause_for(self, seconds: float, now: float) -> None:
        """Start nothing before ``now + seconds``; then one start per interval again.

        Examples:
            >>> limiter = Limiter(rate=10, burst=5)
            >>> limiter.pause_for(7, now=0.0)
            >>> [round(limiter.reserve(now=0.0), 3) for _ in range(3)]
            [7.0, 7.1, 7.2]
        """
        if pausing(seconds):
            # The schedule is one timestamp: place it so the burst tolerance ends at the pause.
            with self._lock:
                self._tat = max(self._tat, now + seconds + (self.burst - 1) * self.interval)

    async def apause_for(self, seconds: float, now: float) -> None:
        """:meth:`pause_for` for async callers: in-process, it never blocks."""
        self.pause_for(seconds, now)


def pausing(seconds: float) -> bool:
    """Whether a pause of ``seconds`` holds anything (not 0, negative, NaN or infinite)."""
    return 0 < seconds <= validate.MAX_SECONDS


@final
class PerArgsLimiter(Owned):
    """One :class:`Limiter` per distinct argument set (``rate_limit_scope="per_args"``)."""

    __slots__ = (
        "_keys",
        "_limiters",
        "_lock",
        "_owner",
        "_paused_until",
        "_prune_at",
        "burst",
        "rate",
    )

    def __init__(
        self,
        rate: float,
        burst: int,
        keys: Callable[[tuple[Any, ...], dict[str, Any]], Hashable],
    ) -> None:
        check_rate(rate, burst)
        self.rate = float(rate)
        self.burst = burst
        self._keys = keys
        self._limiters: dict[Hashable, Limiter] = {}
        self._lock = forksafe.lock()
        self._prune_at = _PRUNE_AT
        self._paused_until = -math.inf

    def reserve_for(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> float:
        """Reserve a start on the limiter of this argument set."""
        key = freeze(self._keys(args, kwargs))
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                if len(self._limiters) >= self._prune_at:
                    # An idle limiter equals a fresh one, so dropping it loses nothing.
                    # The next prune waits until the table doubles: amortised O(1).
                    self._limiters = {k: v for k, v in self._limiters.items() if not v.idle(now)}
                    self._prune_at = max(_PRUNE_AT, 2 * len(self._limiters))
                limiter = self._limiters[key] = Limiter(self.rate, self.burst)
                if self._paused_until > now:  # a new argument set joins a paused scope
                    limiter.pause_for(self._paused_until - now, now)
        return limiter.reserve(now)

    async def areserve_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float
    ) -> float:
        """:meth:`reserve_for` for async callers: in-process, it never blocks."""
        return self.reserve_for(args, kwargs, now)

    def pause_for(self, seconds: float, now: float) -> None:
        """Pause the whole scope: every argument set, including ones not seen yet.

        The server's ``Retry-After`` does not say which arguments it was about,
        and per-argument limits usually share one server, so no set is let through.
        """
        if pausing(seconds):
            with self._lock:
                self._paused_until = max(self._paused_until, now + seconds)
                for limiter in self._limiters.values():
                    limiter.pause_for(seconds, now)

    async def apause_for(self, seconds: float, now: float) -> None:
        """:meth:`pause_for` for async callers: in-process, it never blocks."""
        self.pause_for(seconds, now)


class RateLimit(Protocol):
    """What the shells ask of a limiter, in-process or shared: how long to wait for a slot.

    ``reserve_for`` books the next start for a call with these arguments and
    returns the seconds to wait; ``areserve_for`` is the same for async
    callers (a shared limiter asks its server without blocking the loop).
    ``pause_for(seconds, now)`` (and ``apause_for``) hold the whole scope: no
    reservation made afterwards starts before ``now + seconds``.  A shared
    limiter pauses every process using the scope.
    """

    rate: float
    burst: int

    def reserve_for(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> float:
        """Book a start; the seconds to wait for it."""
        ...

    async def areserve_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float
    ) -> float:
        """Book a start without blocking the event loop; the seconds to wait for it."""
        ...

    def pause_for(self, seconds: float, now: float) -> None:
        """Let no reservation start before ``now + seconds`` (a server's Retry-After)."""
        ...

    async def apause_for(self, seconds: float, now: float) -> None:
        """:meth:`pause_for` without blocking the event loop."""
        ...
