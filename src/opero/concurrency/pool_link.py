"""A process or Dask map's key pool and circuit breaker, held by the parent for every worker.

Issue 14 (5): the processes of one map share one breaker and one budget per
candidate, and one ``circuit_breaker=``.  The parent holds them; a worker's pipeline
gets stand-ins with the surface the engine uses (``core/pool_flow.py``): a
`RemotePool` (``local = False``: no fast path) of `RemoteCandidate`, and a
`RemoteCircuit`.  Each keeps a mirror of the parent's state, reopen time, rest and
next budget slot, refreshed by every answer, which the order and the engine's checks
read without a round trip; only the parent lets a call through.  Round trips:

* "order", once per attempt: the parent orders its candidates and takes the first
  that lets the call through (its breaker permit, its budget slot, a call in flight);
  the answer is the order with that one first, the slot's wait and the mirror;
* "take" for each further candidate of the attempt (after a fallback), "start" for
  it without breakers;
* one to settle each call: "record" or "release" with a breaker (the call's end
  rides along), "end" without;
* ``circuit_breaker=``: "acquire", then "record" or "release", around the whole call.

The parent answers on the map's `ScopeServer` thread (``scope_link.py``), with a
`Held` per worker connection: it notes what that worker took and has not settled,
and gives it back when the connection closes (a dead worker keeps no probe permit).
A worker that cannot reach the parent (a Dask worker on another host) uses the pool
and breaker it built from the same settings (one WARNING, from the `Channel`): never
unlimited.  With ``breaker_backend="redis"`` the worker's own pool and breaker share
their state through redis already: no stand-in.  The engine asks the stand-ins in
`~opero.core.steps.Remote` steps; an async worker's are made on the stand-in's
``lane`` (``core/lane.py``: one thread, in order, which the one connection of the
`Channel` needs anyway), so the worker's loop runs on during a round trip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol, cast, final

from opero.concurrency.remote_candidate import STATES, RemoteCandidate, Row, seen
from opero.core import clock
from opero.core.breaker import CLOSED, State
from opero.core.lane import Lane

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opero.core.breaker_state import BreakerState
    from opero.core.candidates import Pool
    from opero.core.pipeline import Pipeline

__all__ = [
    "RemoteCircuit",
    "RemotePool",
    "channel_of",
    "held_by_parent",
    "remote_circuit",
    "remote_pool",
    "seen",
]


def held_by_parent(p: Pipeline) -> bool:
    """Whether a map of ``p`` has the parent hold its key pool or circuit breaker."""
    return (p.pool is not None or p.circuit is not None) and not _shared_by_backend(p.config)


def _shared_by_backend(config: Mapping[str, Any]) -> bool:
    # breaker_backend="redis" keeps breakers and budgets in redis, which every worker
    # reaches: the pool and breaker a worker builds are the map's already.
    return bool(config.get("breaker_backend", "memory") == "redis")


def remote_pool(p: Pipeline, config: Mapping[str, Any], channel: Channel) -> Pool | None:
    """The worker's key pool: a stand-in asking the parent, unless none is needed."""
    if p.pool is None or _shared_by_backend(config):
        return p.pool
    rate, burst = config["candidate_rate_limit"], config["candidate_rate_limit_burst"]
    return cast("Pool", RemotePool(p.pool, channel, rate, burst))


def remote_circuit(p: Pipeline, config: Mapping[str, Any], channel: Channel) -> BreakerState | None:
    """The worker's ``circuit_breaker=``: a stand-in asking the parent, unless none is needed."""
    if p.circuit is None or _shared_by_backend(config):
        return p.circuit
    return cast("BreakerState", RemoteCircuit(p.circuit, channel))


class Channel(Protocol):
    """What the stand-ins use of their connection to the parent, ``scope_link.Channel``
    (known by its surface, so that ``scope_link.py`` imports this module, never back)."""

    address: Any

    def ask(self, request: tuple[Any, ...]) -> Any: ...


def channel_of(p: Pipeline) -> Channel | None:
    """The `Channel` the stand-ins of a worker's pipeline ``p`` share, or None (only the
    stand-ins, ``scope_link.RemoteLimit`` and those here, have a ``channel``)."""
    for part in (p.limiter, p.pool, p.circuit):
        channel = getattr(part, "channel", None)
        if channel is not None:
            return cast("Channel", channel)
    return None


@final
class RemotePool:
    """A worker's stand-in for the map's key pool (see the module's note).

    Used by one chunk at a time, from one thread (an async chunk's tasks share its loop).
    """

    #: Not the in-process pool: the engine's fast path is for local pools only.
    local: Final = False

    __slots__ = (
        "_ends",
        "alone",
        "breaker",
        "burst",
        "candidates",
        "channel",
        "fallback",
        "lane",
        "name",
        "rate",
        "strategy",
    )

    def __init__(self, fallback: Pool, channel: Channel, rate: float | None, burst: int) -> None:
        self.name, self.strategy, self.breaker = fallback.name, fallback.strategy, fallback.breaker
        #: The pool of the same settings this worker uses while the parent cannot be reached.
        self.fallback = fallback
        self.channel = channel
        #: Where an async worker's round trips are made (``core/lane.py``).
        self.lane = Lane("parent")
        self.rate, self.burst = rate, burst
        #: The last request found no parent: every candidate is the fallback's.
        self.alone = False
        self.candidates: list[RemoteCandidate] = []
        self._ends: list[int] = []  # calls ended, told with the next request

    def health(self, n: int) -> list[RemoteCandidate]:
        """The candidates, holding at least ``n``."""
        candidates = self.candidates
        while len(candidates) < n:
            candidates.append(RemoteCandidate(self, len(candidates)))
        return candidates

    def order(self, n: int, now: float) -> list[int]:
        """The attempt's order, its first candidate taken by the parent (one round trip)."""
        self.health(n)
        answer = self.ask("order", -1, None)
        if answer is None:
            return self.fallback.order(n, now)
        order, taken, delay, rows = answer
        self.mirror(rows, now, refused=taken < 0)
        if taken >= 0:
            self.candidates[taken].ticket = delay
        return cast("list[int]", order)

    def ask(self, op: str, index: int, arg: Any) -> Any:
        """The parent's answer to ``op`` on candidate ``index``; None: this worker is alone."""
        ends, self._ends = self._ends, []
        answer = self.channel.ask(("pool", op, index, arg, len(self.candidates), ends))
        self.alone = answer is None
        return answer

    def ended(self, index: int, *, tell: bool) -> None:
        """A call to candidate ``index`` ended: tell the parent now, or with the next request."""
        self._ends.append(index)
        if tell and (rows := self.ask("end", index, None)) is not None:
            self.mirror(rows, clock.now())

    def mirror(self, rows: list[Row], now: float, *, refused: bool = False) -> None:
        """Take in the parent's view (``refused``: it let none of them through just now)."""
        for candidate, row in zip(self.candidates, rows, strict=False):
            candidate.see(row, now, refused=refused)


@final
class RemoteCircuit:
    """A worker's stand-in for the map's ``circuit_breaker=``: the parent's breaker answers."""

    __slots__ = ("_reopens", "_state", "alone", "channel", "config", "fallback", "lane")

    def __init__(self, fallback: BreakerState, channel: Channel) -> None:
        self.config = fallback.config
        #: The breaker of the same settings this worker uses while the parent cannot be reached.
        self.fallback = fallback
        self.channel = channel
        #: Where an async worker's round trips are made (``core/lane.py``).
        self.lane = Lane("parent")
        self.alone = False
        self._state: State = CLOSED
        self._reopens: float | None = None

    def _ask(self, op: str, now: float, arg: Any = None) -> Any:
        answer = self.channel.ask(("circuit", op, arg))
        self.alone = answer is None
        if answer is not None:
            state, reopen_in = answer[1]
            self._state = STATES[state]
            self._reopens = None if reopen_in is None else now + reopen_in
        return answer

    def acquire(self, now: float) -> bool:
        """May the call go?  (In half-open the parent hands out one probe permit.)"""
        answer = self._ask("acquire", now)
        return self.fallback.acquire(now) if answer is None else cast("bool", answer[0])

    def record(self, now: float, failed: bool) -> State | None:
        """The whole call's outcome, for the parent's breaker."""
        return (
            self.fallback.record(now, failed) if self._ask("record", now, failed) is None else None
        )

    def release(self, now: float) -> None:
        """The call ended with nothing to count: the permit goes back."""
        if self._ask("release", now) is None:
            self.fallback.release(now)

    def state(self, now: float) -> State:
        """Its state at ``now``, as last seen."""
        return self.fallback.state(now) if self.alone else seen(self._state, self._reopens, now)[0]

    def reopens_at(self, now: float) -> float | None:
        """When it lets a probe through, as last seen."""
        return (
            self.fallback.reopens_at(now)
            if self.alone
            else seen(self._state, self._reopens, now)[1]
        )
