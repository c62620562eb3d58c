"""One candidate of a worker's `RemotePool`: the parent's candidate, asked (``pool_link.py``).

It is its own ``breaker`` and ``budget`` (the surface ``core/pool_flow.py`` uses),
as ``core/backends/redis_breaker.py``'s candidates are: every operation that changes
the candidate's health is the parent's, and what the engine reads between two
answers (state, reopen time, rest, next slot) is the last answer's mirror.  While the
parent cannot be reached, the same-index candidate of the worker's own pool answers.
The mirror's shapes (`Row`, `seen`) are here, and the pool is known by what the
candidate uses of it (`Asker`), so ``pool_link.py`` imports this module, never back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, final

from opero.core import clock
from opero.core.breaker import CLOSED, HALF_OPEN, OPEN, State
from opero.core.candidate_counts import Counts, report
from opero.core.rate_limit import pausing
from opero.core.stats import CandidateStatistics

if TYPE_CHECKING:
    from opero.core.breaker import Breaker
    from opero.core.breaker_state import BreakerState
    from opero.core.candidates import Candidate, Pool
    from opero.core.lane import Lane

__all__ = ["STATES", "Asker", "RemoteCandidate", "Row", "seen"]

#: A breaker as the parent saw it: ``(state, seconds until it reopens or None)``, and for a
#: candidate also ``(seconds of rest left, seconds until its next budget slot)``.
Row = tuple[Any, ...]
STATES: Final[dict[str, State]] = {CLOSED: CLOSED, OPEN: OPEN, HALF_OPEN: HALF_OPEN}


def seen(state: State, reopens: float | None, now: float) -> tuple[State, float | None]:
    """A mirrored breaker at ``now``: its state (open past its cooldown: half-open), reopen."""
    if state is OPEN and reopens is not None:
        return (HALF_OPEN, None) if now >= reopens else (OPEN, reopens)
    return state, None


class Asker(Protocol):
    """What a `RemoteCandidate` uses of its pool, ``pool_link.RemotePool``."""

    breaker: Breaker | None
    rate: float | None
    burst: int
    alone: bool
    fallback: Pool
    lane: Lane

    def ask(self, op: str, index: int, arg: Any) -> Any: ...
    def mirror(self, rows: list[Row], now: float, *, refused: bool = False) -> None: ...
    def ended(self, index: int, *, tell: bool) -> None: ...


@final
class RemoteCandidate(Counts):
    """One candidate of a `RemotePool`; its own ``breaker`` and ``budget`` (the parent's)."""

    __slots__ = (
        "_booked",
        "_refused",
        "_reopens",
        "_slot",
        "_state",
        "breaker",
        "budget",
        "config",
        "in_flight",
        "lane",
        "pool",
        "rest_until",
        "ticket",
    )

    def __init__(self, pool: Asker, index: int) -> None:
        super().__init__(index)
        self.pool = pool
        self.lane = pool.lane  # the engine asks it in the pool's `Remote` steps
        #: The breaker settings (``should_trip`` is asked here, where the error is).
        self.config: Breaker | None = pool.breaker
        self.breaker = self if pool.breaker is not None else None
        self.budget = self if pool.rate is not None else None
        self.rest_until = -math.inf
        self.in_flight = 0
        #: Taken by the parent for the next call: its budget slot's wait, until it starts.
        self.ticket: float | None = None
        self._booked: float | None = None  # started: what `reserve` hands out
        self._refused = False
        self._state: State = CLOSED
        self._reopens: float | None = None
        self._slot = -math.inf

    def _local(self) -> Candidate:
        return self.pool.fallback.health(self.index + 1)[self.index]

    def see(self, row: Row, now: float, *, refused: bool) -> None:
        """The parent's view of it at ``now`` (a `Row`)."""
        state, reopen_in, rest_in, slot_in = row
        self._state = STATES[state]
        self._reopens = None if reopen_in is None else now + reopen_in
        self.rest_until, self._slot, self._refused = now + rest_in, now + slot_in, refused

    def state(self, now: float) -> State:
        """Its breaker's state at ``now``, as last seen."""
        return (
            self._local().state(now)
            if self.pool.alone
            else seen(self._state, self._reopens, now)[0]
        )

    def reopens_at(self, now: float) -> float | None:
        """When its open breaker lets a probe through, as last seen."""
        if self.pool.alone:
            return cast("BreakerState", self._local().breaker).reopens_at(now)
        return seen(self._state, self._reopens, now)[1]

    def resting(self, now: float) -> bool:
        """Whether a server's rest holds it at ``now``."""
        return self._local().resting(now) if self.pool.alone else now < self.rest_until

    def next_slot(self, now: float) -> float:
        """When its budget lets a call start (now for the one the parent took for this call)."""
        if self.pool.alone:
            return self._local().next_slot(now)
        return now if self.ticket is not None or self.budget is None else max(now, self._slot)

    next_start = next_slot

    def acquire(self, now: float) -> bool:
        """May a call go to it?  The parent's breaker answers, and books its slot."""
        if self.ticket is not None:
            return True
        if self._refused and not self.pool.alone:
            self._refused = False
            return False
        return self._take("take", now)

    def _take(self, op: str, now: float) -> bool:
        answer = None if self.pool.alone else self.pool.ask(op, self.index, None)
        if answer is None:
            return op == "start" or cast("BreakerState", self._local().breaker).acquire(now)
        ok, delay, rows = answer
        self.pool.mirror(rows, now)
        if ok:
            self.ticket = delay
        return cast("bool", ok)

    def started(self) -> None:
        """A call to it starts (taken as it starts when the pool has no breakers)."""
        next(self._calls)
        self.in_flight += 1
        if self.ticket is None and not self.pool.alone:
            self._take("start", clock.now())
        if self.pool.alone:
            self._local().started()
        self._booked, self.ticket = self.ticket, None

    def reserve(self, now: float) -> float:
        """The wait for the budget slot the parent booked for this call."""
        booked, self._booked = self._booked, None
        if booked is not None and not self.pool.alone:
            return booked
        answer = None if self.pool.alone else self.pool.ask("reserve", self.index, None)
        if answer is None:
            return cast("Any", self._local().budget).reserve(now)  # type: ignore[no-any-return]
        return float(answer)

    def ended(self) -> None:
        """Its call ended (told with the breaker's outcome when there is a breaker)."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.pool.alone:
            self._local().ended()
        else:
            self.pool.ended(self.index, tell=self.breaker is None)

    def _settle(self, op: str, now: float, arg: Any = None) -> bool:
        """Tell the parent; False when it cannot be reached (the caller acts locally)."""
        rows = None if self.pool.alone else self.pool.ask(op, self.index, arg)
        if rows is not None:
            self.pool.mirror(rows, now)
        return rows is not None

    def record(self, now: float, failed: bool) -> State | None:
        """Its call's outcome, for the parent's breaker."""
        if self._settle("record", now, failed):
            return None
        return cast("BreakerState", self._local().breaker).record(now, failed)

    def success(self, now: float | None) -> State | None:
        """``record(now, failed=False)``, as `BreakerState.success` (None: opero's clock now)."""
        return self.record(clock.now() if now is None else now, failed=False)

    def release(self, now: float) -> None:
        """Its call ended with nothing to count: the parent's breaker gets the permit back."""
        if not self._settle("release", now):
            cast("BreakerState", self._local().breaker).release(now)

    def rest(self, now: float, seconds: float) -> None:
        """A server asked it to rest ``seconds``: every worker skips it meanwhile."""
        if pausing(seconds):
            next(self._rests)
            self.rest_until = max(self.rest_until, now + seconds)
            if not self._settle("rest", now, seconds):
                self._local().rest(now, seconds)

    def failed(self) -> None:
        """Its call's routed error counted as a failure (the parent counts it at the record)."""
        next(self._failures)
        if self.breaker is None and not self._settle("failed", clock.now()):
            self._local().failed()

    def report(self, now: float) -> CandidateStatistics:
        """This worker's counts and the last view of its health (the parent's is the map's)."""
        rate, used = self.pool.rate, None
        if rate is not None:
            used = min(1.0, max(0.0, self._slot - now) * rate / self.pool.burst)
        return report(self, now, self.reopens_at(now) if self.breaker is not None else None, used)
