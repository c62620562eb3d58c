"""What ``statistics()`` shows for one candidate, counted in the process that calls it.

A candidate's health may live in this process (`opero.core.candidate.Candidate`), in
redis (``breaker_backend="redis"``) or with a map's parent (a worker's stand-in); what
this process did with it is counted the same way in each: ``calls``, ``failures`` and
``rests`` on ``itertools.count`` objects (``next`` is one C call, so threads never lose
an increment and the success path takes no lock), and :func:`report` turns them and the
candidate's view of its health into a `CandidateStatistics`, by index only.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Protocol

from opero.core.stats import CandidateStatistics, count_value

if TYPE_CHECKING:
    from opero.core.breaker import State

__all__ = ["Counts", "report"]


class Counts:
    """A candidate's index and its counts (the base of each kind of candidate)."""

    __slots__ = ("_calls", "_failures", "_rests", "index")

    def __init__(self, index: int) -> None:
        #: Its position in the candidate list: the only name logs and statistics use.
        self.index = index
        self._calls = itertools.count()
        self._failures = itertools.count()
        self._rests = itertools.count()

    @property
    def calls(self) -> int:
        """Calls of the function, in this process, that went to this candidate."""
        return count_value(self._calls)

    @property
    def failures(self) -> int:
        """Of those, the ones that ended with a routed error counted as a failure."""
        return count_value(self._failures)

    @property
    def rests(self) -> int:
        """Times a server's 429 or Retry-After rested it, seen by this process."""
        return count_value(self._rests)

    def failed(self) -> None:
        """Its call ended with a routed error that counts as a failure."""
        next(self._failures)


class _Viewed(Protocol):
    """What `report` reads of a candidate."""

    @property
    def index(self) -> int: ...
    @property
    def rest_until(self) -> float: ...
    @property
    def calls(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def rests(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    def state(self, now: float) -> State: ...
    def resting(self, now: float) -> bool: ...


def report(
    candidate: _Viewed, now: float, reopens_at: float | None, budget_used: float | None
) -> CandidateStatistics:
    """``candidate``'s statistics at ``now``, given when its breaker lets a probe through
    (None: not waiting on time) and the fraction of its budget booked ahead (None: none)."""
    at = reopens_at
    if candidate.resting(now):
        at = max(at or now, candidate.rest_until)
    return CandidateStatistics(
        index=candidate.index,
        state=candidate.state(now),
        reopens_in=None if at is None else max(0.0, at - now),
        calls=candidate.calls,
        failures=candidate.failures,
        rests=candidate.rests,
        in_flight=candidate.in_flight,
        budget_used=budget_used,
    )
