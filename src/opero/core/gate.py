"""A function's pause after a server said "come back later", for functions with no rate limit.

After a 429 with ``Retry-After: 7`` every concurrent caller that goes on
calling earns another 429.  A rate-limited function pauses its limiter's scope
(``RateLimit.pause_for``); a function without one pauses here.  The success
path only tests ``until`` (a float, falsy when open): no clock read and no lock
until a pause was set, and the first caller past its end opens the gate again.

Examples:
    >>> gate = PauseGate()
    >>> gate.close(until=7.0)
    >>> gate.wait(now=2.0), gate.wait(now=7.5), gate.until
    (5.0, 0.0, 0.0)
"""

from __future__ import annotations

from typing import final

from opero.core import forksafe
from opero.core.owned import Owned

__all__ = ["PauseGate"]


@final
class PauseGate(Owned):
    """Calls of one function wait until ``until`` (clock time); ``0.0`` when open."""

    __slots__ = ("_lock", "_owner", "until")

    def __init__(self) -> None:
        #: The clock time the pause ends, or ``0.0`` when there is none (falsy: open).
        self.until = 0.0
        self._lock = forksafe.lock()

    def close(self, until: float) -> None:
        """Pause every call of the function until ``until``, or longer if it already is."""
        with self._lock:
            self.until = max(self.until, until)

    def wait(self, now: float) -> float:
        """Seconds a call starting at ``now`` waits; 0 once the pause is over (which opens it)."""
        until = self.until
        if not until:
            return 0.0
        if now < until:
            return until - now
        with self._lock:
            if self.until <= now:  # not pushed further meanwhile
                self.until = 0.0
        return 0.0
