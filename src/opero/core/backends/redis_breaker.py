"""Breakers, rests and candidate budgets shared through redis (``breaker_backend="redis"``).

A :class:`RedisCandidate` has the surface of :class:`~opero.core.candidates.Candidate`
(and is its own ``breaker`` and ``budget``), but its breaker state, its rest and its
``candidate_rate_limit`` schedule live in one redis hash and one GCRA key, changed only
by the script of :mod:`~opero.core.backends.redis_breaker_link` on the server's clock.
Two processes, or two hosts, that name the same function or ``rate_limit_scope`` group
therefore see one breaker per candidate: once one of them opens it, the other's next
``acquire`` is refused.

Round trips: ``acquire`` is one script that also books the budget slot (``reserve``
then hands it out without asking again), ``record`` is one.  Each answer refreshes a
local mirror of the state, the reopen time, the rest and the next budget slot, which
``state``, ``resting``, ``next_slot`` and the candidate order read without a round
trip; a stale mirror is never trusted to let a call through, only ``acquire`` is.
The engine makes every call that asks redis in a `~opero.core.steps.Remote` step (the
candidate's ``lane``), so an async caller's loop runs on while redis answers (or, frozen,
does not).

Outages follow the shared limiter's rules (:mod:`~opero.core.backends.redis_limiter`):
while redis cannot be reached each candidate goes on with a local
:class:`~opero.core.breaker_state.BreakerState` and :class:`~opero.core.rate_limit.Limiter`
of the same settings (never unlimited), keeps an open state it last saw from redis,
never counts the outage as a failure of the candidate, and the
:class:`~opero.core.backends.redis_breaker_link.Link` logs one WARNING per outage and one
INFO when redis answers again (asked once per cool-down).
"""

from __future__ import annotations

import math
import threading
from typing import Final, final

from opero.core import clock, forksafe
from opero.core.backends.redis_breaker_link import Link, script_args
from opero.core.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, State
from opero.core.breaker_state import BreakerState, OnChange
from opero.core.candidate_counts import Counts, report
from opero.core.rate_limit import Limiter, pausing
from opero.core.stats import CandidateStatistics

__all__ = ["Link", "RedisCandidate"]

_STATES: Final[dict[str, State]] = {CLOSED: CLOSED, OPEN: OPEN, HALF_OPEN: HALF_OPEN}


@final
class RedisCandidate(Counts):
    """One candidate (or one function's circuit breaker) whose health lives in redis.

    It is its own ``breaker`` (when it has breaker settings) and ``budget`` (with a
    rate); the statistics counters are this process's own.
    """

    __slots__ = (
        "_args",
        "_booked",
        "_burst_span",
        "_keys",
        "_link",
        "_local",
        "_lock",
        "_on_change",
        "_open_until",
        "_own_budget",
        "_own_rest",
        "_own_until",
        "_state",
        "_tat",
        "_tolerance",
        "breaker",
        "budget",
        "config",
        "in_flight",
        "lane",
        "rest_until",
    )

    def __init__(
        self,
        link: Link,
        key: str,
        breaker: Breaker | None,
        *,
        rate: float | None = None,
        burst: int = 1,
        on_change: OnChange | None = None,
        index: int = 0,
    ) -> None:
        super().__init__(index)
        #: The breaker settings (None: no breaker, only rests and a budget).
        self.config = breaker
        self.breaker = self if breaker is not None else None
        self.budget = self if rate is not None else None
        #: The local state used while redis cannot be reached.
        self._local = None if breaker is None else BreakerState(breaker, on_change)
        self._own_budget = None if rate is None else Limiter(rate, burst)
        self._burst_span = 0.0 if rate is None else burst / rate
        self._tolerance = 0.0 if rate is None else (burst - 1) / rate
        self._own_until = -math.inf  # the end of the starts handed out during an outage
        self._link = link
        #: The link's lane: the engine asks it in `Remote` steps (not in this process).
        self.lane = link.lane
        self._keys = [key, key + ":budget"]
        self._args = script_args(breaker, rate, burst)
        self._on_change = on_change
        # The mirror of the last answer, in opero's clock.
        self._state: State = CLOSED
        self._open_until = -math.inf
        self._tat = -math.inf
        #: Until when it rests (the shared rest, or one this process asked for).
        self.rest_until = -math.inf
        self._own_rest = -math.inf
        self._booked = threading.local()  # the slot acquire booked, for this thread's reserve
        self.in_flight = 0
        self._lock = forksafe.lock()

    # --- the breaker ---------------------------------------------------------------------

    def acquire(self, now: float) -> bool:
        """May a call go now?  Asks redis (one script, which also books the budget slot)."""
        self._booked.__dict__.pop("start", None)  # one a caller never took is not this call's
        answer = self._ask("a", now)
        if answer is None:
            if self._state is OPEN and now < self._open_until:
                return False  # the last state redis gave: the outage opens nothing, nor closes
            return self._local is None or self._local.acquire(now)
        return answer[4] == "1"

    def record(self, now: float, failed: bool) -> State | None:
        """Count one outcome in redis; the new state if it changed, else None."""
        answer = self._ask("f" if failed else "r", now)
        if answer is None:
            return None if self._local is None else self._local.record(now, failed)
        return _STATES[answer[4]] if answer[4] else None

    def success(self, now: float | None) -> State | None:
        """``record(now, failed=False)``, as `BreakerState.success` (None: opero's clock now)."""
        return self.record(clock.now() if now is None else now, failed=False)

    def release(self, now: float) -> None:
        """Give back a half-open permit without an outcome."""
        if self._ask("l", now) is None and self._local is not None:
            self._local.release(now)

    def state(self, now: float) -> State:
        """The state at ``now`` from the last answer (local state during an outage)."""
        if self._link.down and self._local is not None and not now < self._open_until:
            return self._local.state(now)
        state = self._state
        if state is OPEN and now >= self._open_until:
            return HALF_OPEN
        return state

    def reopens_at(self, now: float) -> float | None:
        """When an open breaker lets a probe through (the last answer's, or the local one)."""
        if self._state is OPEN and now < self._open_until:
            return self._open_until
        if self._link.down and self._local is not None:
            return self._local.reopens_at(now)
        return None

    # --- the budget ----------------------------------------------------------------------

    def reserve(self, now: float) -> float:
        """The wait for this call's budget slot: the one ``acquire`` booked, or a new one.

        Counted from the time after asking (the caller waits from then on), on opero's clock.
        """
        booked = self._booked.__dict__
        start: float | None = booked.pop("start", None)
        if start is None:
            answered = self._ask("b", now) is not None
            start = booked.pop("start", None) if answered else self._start(None, self._now(now))
        current = self._now(now)
        return max(0.0, (current if start is None else start) - current)

    def _now(self, now: float) -> float:
        # The time at this moment: a round trip may have taken a while since ``now``.
        return now if self._link.explicit_time else clock.now()

    def next_start(self, now: float) -> float:
        """When the budget lets the next call start, from the last answer (no round trip)."""
        if self._link.down and self._own_budget is not None:
            return self._own_budget.next_start(now)
        return max(now, self._tat - self._tolerance)

    # --- the candidate -------------------------------------------------------------------

    def rest(self, now: float, seconds: float) -> None:
        """Rest it for ``seconds`` in redis (every process skips it), and here at once."""
        if pausing(seconds):
            next(self._rests)
            with self._lock:
                self._own_rest = max(self._own_rest, now + seconds)
                self.rest_until = max(self.rest_until, self._own_rest)
            self._ask("p", now, rest=seconds)

    def resting(self, now: float) -> bool:
        """Whether it rests at ``now`` (from the last answer: ``acquire`` asks redis)."""
        return now < self.rest_until

    def next_slot(self, now: float) -> float:
        """When its budget lets the next call start; ``now`` without a budget."""
        return now if self.budget is None else self.next_start(now)

    def started(self) -> None:
        """A call to it has started (counted in ``calls``)."""
        next(self._calls)
        with self._lock:
            self.in_flight += 1

    def ended(self) -> None:
        """A call to it has ended."""
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    def report(self, now: float) -> CandidateStatistics:
        """Its statistics at ``now``, from the last answer (no round trip)."""
        used = None
        if self.budget is not None:
            ahead = max(0.0, self._tat - now)
            used = min(1.0, ahead / self._burst_span) if self._burst_span else 0.0
        return report(self, now, self.reopens_at(now), used)

    # --- talking to redis ----------------------------------------------------------------

    def _ask(self, op: str, now: float, rest: float = 0.0) -> list[str] | None:
        """Run the script for ``op``; refresh the mirror from its answer (None: no answer)."""
        link = self._link
        at = repr(now * 1e6) if link.explicit_time else ""
        answer = link.ask(self._keys, [op, at, *self._args, repr(rest * 1e6)])
        if answer is None:
            return None
        base = self._now(now)
        state, before = _STATES[answer[0]], _STATES[answer[5]]
        with self._lock:
            self._state = state
            self._open_until = base + float(answer[1]) / 1e6 if state is OPEN else -math.inf
            self.rest_until = max(base + float(answer[2]) / 1e6, self._own_rest)
            if answer[3]:
                self._tat = base + float(answer[3]) / 1e6
            if answer[6]:
                self._booked.start = self._start(answer, base)
        if state is not before and self._on_change is not None:
            self._on_change(before, state)
        return answer

    def _start(self, answer: list[str] | None, base: float) -> float:
        """The start of a slot redis booked, recorded in the own budget; or (no answer) the
        own budget's next start, so an outage still limits."""
        own = self._own_budget
        if own is None:
            return base
        if answer is None or not answer[6]:
            start = base + own.reserve(base)
            self._own_until = max(self._own_until, start + own.interval)
            return start
        start = base + float(answer[6]) / 1e6
        extra = own.reserve(start)  # recorded, so an outage continues after redis's slots
        if start < self._own_until:
            # Starts handed out here during an outage are still ahead, and redis (perhaps
            # restarted empty) does not know them: keep clear of them (as the shared limiter).
            start += extra
        return start
