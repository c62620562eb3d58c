"""A function's pause after a server said "come back later", for functions with no rate limit.

After a 429 with ``Retry-After: 7`` every concurrent caller that goes on
calling earns another 429.  A rate-limited function pauses its limiter's scope
(``RateLimit.pause_for``); a function without one pauses here.  The success
path only tests ``until`` (a float, falsy when open): no clock read and no lock
until a pause was set, and the first caller past its end opens the gate again.

A process or Dask map's workers each hold their own pipeline, so their gates are
*linked* to one shared cell (``opero.concurrency.pause_cell``): a pause set in
one process is pushed there, and every gate reads it back before it waits
(``wait``) and wherever the map starts items (``pull``).

Examples:
    >>> gate = PauseGate()
    >>> gate.close(until=7.0)
    >>> gate.wait(now=2.0), gate.wait(now=7.5), gate.until
    (5.0, 0.0, 0.0)
"""

from __future__ import annotations

from typing import Protocol, final

from opero.core import forksafe
from opero.core.owned import Owned

__all__ = ["PauseGate", "SharedPause"]


class SharedPause(Protocol):
    """A pause's end shared by several processes (clock time, ``0.0``: none)."""

    def read(self) -> float:
        """The shared pause's end."""
        ...

    def push(self, until: float) -> None:
        """Make the shared pause last until ``until``, unless it already lasts longer."""
        ...


@final
class PauseGate(Owned):
    """Calls of one function wait until ``until`` (clock time); ``0.0`` when open."""

    __slots__ = ("_lock", "_owner", "held", "held_link", "link", "until")

    def __init__(self) -> None:
        #: The clock time the pause ends, or ``0.0`` when there is none (falsy: open).
        self.until = 0.0
        #: The pause shared with the other processes of a map, or None (this process alone).
        self.link: SharedPause | None = None
        #: With a rate limit the limiter holds the pause, and the gate stays open; it keeps
        #: the pause's end here (and a map worker's shared pause in ``held_link``) for the
        #: calls that booked a slot before the pause began (see `held_for`).
        self.held = 0.0
        self.held_link: SharedPause | None = None
        self._lock = forksafe.lock()

    def note(self, until: float) -> None:
        """A rate-limited function was paused until ``until`` (its limiter holds new slots)."""
        with self._lock:
            self.held = max(self.held, until)

    def held_for(self, now: float) -> float:
        """Seconds a call that waited for a slot booked before a pause must still wait."""
        until = self.held
        link = self.held_link
        if link is not None:
            until = max(until, link.read())
        return until - now if until > now else 0.0

    def close(self, until: float) -> None:
        """Pause every call of the function until ``until``, or longer if it already is."""
        with self._lock:
            self.until = max(self.until, until)
        link = self.link
        if link is not None:
            link.push(until)

    def pull(self, now: float) -> None:
        """Take on the shared pause, if it lasts past ``now`` (nothing to do when unlinked)."""
        link = self.link
        if link is not None:
            shared = link.read()
            if shared > now and shared > self.until:
                with self._lock:
                    self.until = max(self.until, shared)

    def wait(self, now: float) -> float:
        """Seconds a call starting at ``now`` waits; 0 once the pause is over (which opens it)."""
        if self.link is not None:
            self.pull(now)
        until = self.until
        if not until:
            return 0.0
        if now < until:
            return until - now
        with self._lock:
            if self.until <= now:  # not pushed further meanwhile
                self.until = 0.0
        return 0.0
