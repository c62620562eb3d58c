"""One ``arg_fallback`` candidate's live health, and what `statistics()` shows of it.

A :class:`Candidate` keeps what the order of an attempt depends on: its breaker (if
any), until when it rests after a server's 429 or ``Retry-After`` (CONTRACT 34: that
candidate only, the next one is tried at once), its own rate budget
(``candidate_rate_limit=``) and how many calls it has in flight; and the counts its
statistics report.  It is known by its index only: its value is often an API key.
Nothing here reads a clock: the caller passes ``now``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Final, final

from opero.core import forksafe
from opero.core.breaker import CLOSED, Breaker, State
from opero.core.breaker_state import BreakerState, OnChange
from opero.core.candidate_counts import Counts, report
from opero.core.rate_limit import Limiter, pausing
from opero.core.stats import CandidateStatistics, count_value

__all__ = ["NOT_RESTING", "Candidate", "Make"]

#: ``rest_until`` of a candidate that is not resting: one float object, so the key pool's
#: fast path tells "no rest" by identity, without reading the clock (`Candidate.rested`).
NOT_RESTING: Final = -math.inf


@final
class Candidate(Counts):
    """One candidate's live health: breaker, rest, budget, calls in flight, and its counts.

    ``calls``, ``failures`` and ``rests`` are what `statistics()` shows for it (by
    index, never by value): counted on ``itertools.count`` objects, so threads never
    lose an increment and the success path takes no lock for them.

    Examples:
        >>> key = Candidate(breaker=Breaker(failure_threshold=1), rate=2.0)
        >>> key.rest(now=0.0, seconds=5.0)
        >>> key.resting(4.9), key.resting(5.0), key.next_slot(0.0)
        (True, False, 0.0)
        >>> key.report(1.0).reopens_in, key.rests
        (4.0, 1)
    """

    __slots__ = ("_ended", "_lock", "breaker", "budget", "ended", "rest_until", "started")

    def __init__(
        self,
        breaker: Breaker | None = None,
        rate: float | None = None,
        burst: int = 1,
        on_change: OnChange | None = None,
        index: int = 0,
    ) -> None:
        super().__init__(index)
        #: The breaker's state, or None when the pool has no breakers.
        self.breaker = None if breaker is None else BreakerState(breaker, on_change)
        #: The candidate's own limiter (``candidate_rate_limit=``), or None.
        self.budget = None if rate is None else Limiter(rate, burst)
        #: Until when a server's 429 or Retry-After rests it (`NOT_RESTING`: never, or a
        #: rest seen to be over).
        self.rest_until: float = NOT_RESTING
        self._ended = itertools.count()
        #: ``started()``: a call to it starts (counted in ``calls``); ``ended()``: one
        #: ended.  Each is a count's ``__next__``: one C call, no lock, no frame.
        self.started: Callable[[], int] = self._calls.__next__
        self.ended: Callable[[], int] = self._ended.__next__
        self._lock = forksafe.lock()

    @property
    def in_flight(self) -> int:
        """Calls started on it and not yet ended (``least_loaded`` reads it)."""
        return max(0, count_value(self._calls) - count_value(self._ended))

    def state(self, now: float) -> State:
        """Its breaker's state at ``now``; closed when it has no breaker."""
        return CLOSED if self.breaker is None else self.breaker.state(now)

    def rest(self, now: float, seconds: float) -> None:
        """Rest this candidate for ``seconds`` (a longer rest already set is kept)."""
        if pausing(seconds):
            next(self._rests)
            with self._lock:
                self.rest_until = max(self.rest_until, now + seconds)

    def resting(self, now: float) -> bool:
        """Whether it is still resting at ``now``."""
        return now < self.rest_until

    def rested(self, until: float) -> None:
        """The rest that lasted until ``until`` is seen to be over: forget it (unless a
        newer rest has been set since), so the fast path stops reading the clock for it."""
        with self._lock:
            if self.rest_until == until:
                self.rest_until = NOT_RESTING

    def next_slot(self, now: float) -> float:
        """When its budget lets the next call start; ``now`` without a budget."""
        return now if self.budget is None else self.budget.next_start(now)

    def claim(self, now: float) -> bool:
        """Take a budget slot that is free at ``now`` (True without a budget); else take none."""
        budget = self.budget
        return budget is None or budget.take(now)

    def report(self, now: float) -> CandidateStatistics:
        """Its statistics at ``now``: counts, state, time to reopen, budget used."""
        reopens = None if self.breaker is None else self.breaker.reopens_at(now)
        used = None if self.budget is None else _used(self.budget, now)
        return report(self, now, reopens, used)


def _used(budget: Limiter, now: float) -> float:
    # The fraction of the burst booked ahead: the GCRA's one timestamp, past ``now``,
    # over the span the whole burst covers (0.0 idle, 1.0 no free slot now).
    ahead = max(0.0, budget._tat - now)  # the limiter's schedule, read only
    return min(1.0, ahead / (budget.burst * budget.interval))


#: ``make(breaker, rate, burst, on_change, index)``: builds one candidate of a pool.
Make = Callable[[Breaker | None, float | None, int, OnChange | None, int], Candidate]
