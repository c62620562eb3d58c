"""The key pool's fast path: a call to a healthy candidate that needs none of the engine's steps.

With a key pool every call runs in the engine (:mod:`opero.core.flow`), some 13 us a
call.  Most calls need none of it: the candidate :func:`choose
<opero.core.pool_flow.choose>` would take is closed, not resting and has a free budget
slot, nothing waits, and the call succeeds.  For those the shell asks :func:`quick_pick`
for that candidate, calls the function itself and records the success with
:func:`done` (lock-free on a closed breaker).  On any error it hands the call to the
engine at that first failed call (:func:`resumed`), so failures, fallbacks, rests and
breaker transitions are decided once, by the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opero.core import clock
from opero.core.breaker import CLOSED
from opero.core.candidate import NOT_RESTING
from opero.core.candidate_order import order
from opero.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from opero.core.candidates import Candidate, Pool
    from opero.core.pipeline import Pipeline
    from opero.core.run import Run

__all__ = ["Picked", "done", "quick_pick", "resumed"]

#: What the fast path picked: the candidate, the round-robin turn it took, the time it
#: read (None when the breakers have a time window, see `done`), and the call's
#: arguments with that candidate in place.
Picked = tuple["Candidate", int, "float | None", tuple[Any, ...], dict[str, Any]]


def done(candidate: Candidate, now: float | None = None) -> None:
    """The call to ``candidate`` succeeded (the engine's `settle` and the shell's fast path).

    ``now`` is the time of the success, or None: the breaker reads the clock where it
    needs the time (`BreakerState.success`).  A closed breaker with a count window
    holding ``minimum_calls`` outcomes (or with none) needs none, so the shell's fast
    path, whose pick reads the clock only for a rest or a budget, passes what it read
    (the cooldown of a success that fills the window up to ``minimum_calls`` and opens
    it then counts from the call's start).  With ``window_seconds`` it passes None: the
    success is counted in the slice of its end.
    """
    candidate.ended()
    breaker = candidate.breaker
    if breaker is not None:
        # Closed, with its count window full enough (or none): one C call, see BreakerState.
        breaker.success(now)


def quick_pick(p: Pipeline) -> Callable[[tuple[Any, ...], dict[str, Any]], Picked | None] | None:
    """The pick of the shell's fast path: the engine's own choice where it needs no step.

    None when the settings always need the engine's steps: a pool kept out of this
    process (``local`` False), ``"least_loaded"`` (it sorts on every call), a deadline,
    ``attempt_timeout``, ``retry_if_result``, ``rate_limit``, ``on_success`` or
    ``circuit_breaker=``.  Else ``pick(args, kwargs)``, which takes the candidate
    :func:`choose` would take when that one is closed, not resting and has a free
    budget slot now (or no budget), and counts its call; ``None`` (nothing taken, the
    engine then runs the whole call) otherwise.  ``"ordered"`` takes the first healthy
    candidate; ``"round_robin"`` only when every candidate is healthy, so the turn
    rotates over all of them as the engine's order would.
    """
    pool, fallback = p.pool, p.fallback
    if pool is None or fallback is None or _engine_only(p, pool):
        return None
    ordered, cursor, health_of, gate = pool.strategy == "ordered", pool.cursor, pool.health, p.gate
    timeless = pool.breaker is None or pool.breaker.window_seconds is None  # see done()
    live = pool.candidates  # grown in place, never replaced
    # The policy's own functions, bound once (`FallbackPolicy.lead`).
    lead, put = fallback.lead, fallback.substitute

    def pick(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Picked | None:
        try:  # the first candidate in place: the one taken, but for a sick one or a turn
            candidates, call_args, call_kwargs = lead(args, kwargs)
        except ConfigurationError:  # an empty list: the engine raises it, counted
            return None
        if candidates is None or gate.until:  # no list, or paused: the engine's Reserve
            return None
        n, turn, now = len(candidates), 0, None
        health = live if len(live) >= n else health_of(n)
        # Healthy: closed (or no breaker), read as the breaker's lock-free acquire reads
        # it, and not resting, told by identity (`NOT_RESTING`) without reading the clock
        # unless a rest has been set; inline (a call of Candidate.ready costs as much as
        # the rest).
        if ordered:
            index = 0
            while True:  # the first healthy one
                candidate = health[index]
                if ((breaker := candidate.breaker) is None or breaker._state is CLOSED) and (
                    candidate.rest_until is NOT_RESTING or not _resting(candidate)
                ):
                    break
                index += 1
                if index == n:
                    return None
        else:
            for candidate in health[:n]:
                if (
                    (breaker := candidate.breaker) is not None and breaker._state is not CLOSED
                ) or (candidate.rest_until is not NOT_RESTING and _resting(candidate)):
                    return None  # the turn rotates over every candidate, or the engine's
            turn = cursor.next()
            index = turn % n
            candidate = health[index]
        if candidate.budget is not None and not candidate.claim(now := clock.now()):
            return None
        candidate.started()
        if index:
            call_args, call_kwargs = put(args, kwargs, candidates[index])
        # A flat tuple, not ``(candidate, turn, *put(...))`` (a list built and converted),
        # unpacked once by the shell: 0.05 to 0.09 us less a call (timeit).
        return candidate, turn, now if timeless else None, call_args, call_kwargs

    return pick


def _engine_only(p: Pipeline, pool: Pool) -> bool:
    # Settings whose every call needs the engine's steps (see quick_pick).
    return (
        not pool.local
        or pool.strategy == "least_loaded"
        or p.circuit is not None
        or p.deadline is not None
        or p.attempt_timeout is not None
        or p.routing.result_check is not None
        or p.limiter is not None
        or p.callbacks.on_success is not None
    )


def _resting(candidate: Candidate) -> bool:
    # A rest has been set: is it still on?  Once seen over, it is forgotten.
    until = candidate.rest_until
    if clock.now() < until:
        return True
    candidate.rested(until)
    return False


def resumed(p: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any], picked: Picked) -> Run:
    """The engine's state after the fast path's call to ``picked`` failed: that candidate
    in progress, first in the attempt's order (the rest as the engine orders them)."""
    from opero.core.run import Run  # noqa: PLC0415 - run imports this module's callers

    pool, fallback = p.pool, p.fallback
    candidate, turn = picked[0], picked[1]
    candidates = fallback.candidates(args, kwargs) if fallback is not None else None
    run = Run(p, args, kwargs, candidates)
    n = len(candidates or ())
    walk = [] if pool is None else order(pool.strategy, n, pool.health(n), clock.now(), turn)
    index = candidate.index
    if index in walk:
        walk.remove(index)
    walk.insert(0, index)
    run.order, run.index, run.picked = walk, index, candidate
    return run
