"""The engine's part for a key pool: which candidate a call goes to, and what it learnt.

With ``candidate_breaker=``, ``candidate_rate_limit=`` or ``fallback_strategy=``, a
call runs whole in the engine (:mod:`opero.core.flow`; but a healthy candidate's
successful call is made by the shell, :mod:`opero.core.pool_fast`), and before each
call of the function :func:`choose` picks the candidate from the attempt's order
(:meth:`Pool.order <opero.core.candidates.Pool.order>`): one that is not resting and
whose breaker lets it through, a free budget slot first.  A candidate refused costs
nothing (no slot, no call).  After the call, :func:`settle` tells the candidate how
it went: a success, a routed error (a failure unless ``should_trip`` says otherwise;
a server's ``Retry-After`` rests that candidate only, CONTRACT 34), or no outcome to
count (an unrouted error, a cancellation, Ctrl-C), which gives its permit back.

Like the rest of the engine it does no I/O: it yields a `Wait` where a driver must
wait, and reads the time through :mod:`opero.core.clock`.  A pool kept elsewhere
(``Pool.local`` False: redis, a map's parent) is asked in `Remote` steps instead of
in place: the pick (:func:`_pick`), each outcome (:func:`settle` returns the step, the
engine yields it) and ``circuit_breaker=``'s acquire and record, each the same rule a
pool in this process runs directly; the async driver makes those round trips on the
pool's lane (:mod:`opero.core.lane`), so the loop runs on.  Pools in this process yield
no such step.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, cast

from opero.core import clock
from opero.core.attempts import RETRY_AFTER
from opero.core.breaker import OPEN
from opero.core.circuit_flow import guarded
from opero.core.pool_fast import done
from opero.core.steps import Remote, Wait
from opero.exceptions import CircuitOpenError
from opero.utils.logging import fields

if TYPE_CHECKING:
    from collections.abc import Generator

    from opero.core.candidates import Candidate, Pool
    from opero.core.lane import Lane
    from opero.core.pipeline import Pipeline
    from opero.core.run import Run
    from opero.core.steps import Step

__all__ = ["abandon", "choose", "guarded", "has_next", "settle"]

logger = logging.getLogger("opero")


def choose(p: Pipeline, run: Run) -> Generator[Step, Any, BaseException | None]:
    """Pick the candidate of the next call (``run.index``, ``run.picked``); None once picked.

    Else the error that ends the call: `CircuitOpenError` when nothing was called yet
    and no candidate can take the call, ``AllFailedError`` when earlier calls failed
    and the rest refuse, ``DeadlineExceeded`` when a wait would pass the deadline.
    Under ``deadline=`` a call waits for the first candidate to reopen if that fits.
    """
    pool: Pool = p.pool  # type: ignore[assignment]
    n = len(run.candidates or ())
    lane = None if pool.local else getattr(pool, "lane", None) or _lane(pool.health(n)[0])
    while True:
        if lane is None:
            now = clock.now()
            delay = _pick(run, pool, n, now)
        else:
            try:
                delay = yield Remote(lane, _pick, run, pool, n, None)
            except BaseException:  # the pick may go on on the lane: what it took goes back after
                lane.later(_give_back, (p, run))
                raise
            now = clock.now()
        if delay is not None:
            return None if delay <= 0 else (yield from _budget(p, run, delay))
        health = pool.candidates
        retry_in = _retry_in(health, n, now)
        if run.deadline is not None and retry_in is not None and run.fits(retry_in):
            yield Wait(retry_in, p.counters)
            run.order = None  # a new order once they reopen
            continue
        if run.errors:
            return run.give_up()
        next(p.counters.failures)
        shut = [i for i in range(n) if health[i].state(now) == OPEN or health[i].resting(now)]
        message = f"every candidate of {p.name} is open or resting ({len(shut)} of {n})"
        if retry_in is not None:
            message += f"; the first takes calls again in {retry_in:.3f}s"
        logger.warning("opero: %s", message, extra=fields(p.name, delay=retry_in))
        return CircuitOpenError(
            message,
            candidates=shut,
            retry_in=retry_in,
            reopens_at=None if retry_in is None else clock.wall() + retry_in,
        )


def _lane(part: Any) -> Lane:
    """The lane of a pool, candidate or breaker kept elsewhere (each stand-in has one)."""
    return cast("Lane", part.lane)


def _pick(run: Run, pool: Pool, n: int, now: float | None) -> float | None:
    """The attempt's order (made once per attempt), its candidate taken (`_take`) and that
    one's budget slot booked: the seconds to wait for the slot, None when none took it.

    ``now`` None: read here (on a lane, when the round trips are made).
    """
    if now is None:
        now = clock.now()
    if run.order is None:
        run.order, run.pos = pool.order(n, now), 0
    if not _take(run, pool.candidates, now):
        return None
    budget = run.picked.budget  # type: ignore[union-attr]  # (no cast: a call, every pick)
    return 0.0 if budget is None else budget.reserve(now)


def _give_back(p: Pipeline, run: Run) -> None:
    """A pick its caller stopped waiting for: what it took goes back (on the lane, after it)."""
    step = settle(p, run, None, routed=False)
    if step is not None:
        step.do()


def _take(run: Run, health: list[Candidate], now: float) -> bool:
    """Take the first candidate of ``run.order[run.pos:]`` that lets the call through.

    One with a free budget slot now comes first, then the earliest slot; the one taken
    moves to ``run.pos``, so a failure moves on to the rest of the order.
    """
    order, pos = run.order or [], run.pos
    usable = [
        i
        for i in range(pos, len(order))
        if not health[order[i]].resting(now) and health[order[i]].state(now) != OPEN
    ]
    if len(usable) > 1 and health[order[pos]].budget is not None:  # budgets: a free slot first
        usable.sort(key=lambda i: max(health[order[i]].next_slot(now), now))  # stable sort
    for i in usable:
        candidate = health[order[i]]
        if candidate.breaker is not None and not candidate.breaker.acquire(now):
            continue
        order.insert(pos, order.pop(i))
        run.index, run.picked = order[pos], candidate
        candidate.started()
        return True
    return False


def _budget(p: Pipeline, run: Run, delay: float) -> Generator[Step, Any, BaseException | None]:
    """Wait ``delay`` for the picked candidate's rate slot (``candidate_rate_limit``)."""
    if not run.fits(delay):
        told = settle(p, run, None, routed=False)
        if told is not None:
            yield told
        return run.expired()
    try:
        yield Wait(delay, p.counters)
    except BaseException:
        abandon(p, run)
        raise
    return None


def has_next(p: Pipeline, run: Run) -> bool:
    """Whether the attempt's order holds another candidate that may take a call now."""
    pool, order = p.pool, run.order
    if pool is None or order is None:
        return False
    now = clock.now()
    health = pool.candidates
    return any(
        not health[c].resting(now) and health[c].state(now) != OPEN for c in order[run.pos + 1 :]
    )


def settle(p: Pipeline, run: Run, error: BaseException | None, *, routed: bool) -> Remote | None:
    """The picked candidate's call ended: with success (``error`` None), a routed error, or
    no outcome to count (``routed`` False: an unrouted error, a cancellation, Ctrl-C).

    Told at once (None) in this process; for a pool kept elsewhere, the `Remote` step
    that tells it, for the engine to yield (or `abandon` on its way out).
    """
    candidate = run.picked
    if candidate is None:
        return None
    run.picked = None
    if p.pool.local:  # type: ignore[union-attr]  # (picked: a pool)
        if error is None:
            done(candidate)
        else:
            _settled(p, candidate, run.index, error, routed)
        return None
    return Remote(_lane(candidate), _settled, p, candidate, run.index, error, routed)


def abandon(p: Pipeline, run: Run) -> None:
    """`settle` with no outcome on the way out of a call (a cancel, Ctrl-C, an error): a pool
    kept elsewhere is told without waiting for it (see `Remote.later`)."""
    step = settle(p, run, None, routed=False)
    if step is not None:
        step.later()


def _settled(
    p: Pipeline, candidate: Candidate, index: int, error: BaseException | None, routed: bool
) -> None:
    """What `settle` tells ``candidate`` (number ``index``)."""
    if error is None:
        done(candidate)
        return
    candidate.ended()
    now = clock.now()
    breaker = candidate.breaker
    if not routed:
        if breaker is not None:
            breaker.release(now)
        return
    failed = breaker is None or breaker.config.counts_as_failure(error)
    if breaker is not None:
        breaker.record(now, failed=failed)
    if failed:
        candidate.failed()
    asked, _ = p.retry.server_wait(error)
    if asked is not None:
        candidate.rest(now, asked)
        logger.info(
            "opero: %s candidate %d rests %.3fs (Retry-After)",
            p.name,
            index,
            asked,
            extra=fields(p.name, candidate=index, delay=asked, reason=RETRY_AFTER),
        )


def _retry_in(health: list[Candidate], n: int, now: float) -> float | None:
    """Seconds until the first of ``n`` candidates takes calls again (None: not on a time)."""
    soonest = math.inf
    for candidate in health[:n]:
        at = candidate.breaker.reopens_at(now) if candidate.breaker is not None else None
        if candidate.resting(now):
            at = max(at or now, candidate.rest_until)
        if at is not None:
            soonest = min(soonest, at)
    return None if soonest == math.inf else max(0.0, soonest - now)
