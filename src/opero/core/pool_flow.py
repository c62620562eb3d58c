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
wait, and reads the time through :mod:`opero.core.clock`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from opero.core import clock
from opero.core.breaker import OPEN
from opero.core.pool_fast import done
from opero.core.steps import End, Wait
from opero.exceptions import AllFailedError, CircuitOpenError

if TYPE_CHECKING:
    from collections.abc import Generator

    from opero.core.breaker_state import BreakerState
    from opero.core.candidates import Candidate, Pool
    from opero.core.pipeline import Pipeline
    from opero.core.run import Run
    from opero.core.steps import Flow, Step

__all__ = ["choose", "guarded", "has_next", "settle"]

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
    while True:
        now = clock.now()
        if run.order is None:
            run.order, run.pos = pool.order(n, now), 0
        health = pool.candidates
        if _take(run, health, now):
            return (yield from _budget(p, run, now))
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
        logger.warning(
            "opero: %s", message, extra={"opero_function": p.name, "opero_delay": retry_in}
        )
        return CircuitOpenError(
            message,
            candidates=shut,
            retry_in=retry_in,
            reopens_at=None if retry_in is None else clock.wall() + retry_in,
        )


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


def _budget(p: Pipeline, run: Run, now: float) -> Generator[Step, Any, BaseException | None]:
    """Take the picked candidate's rate slot (``candidate_rate_limit``), waiting for it."""
    budget = run.picked.budget if run.picked is not None else None
    if budget is None:
        return None
    delay = budget.reserve(now)
    if delay <= 0:
        return None
    if not run.fits(delay):
        settle(p, run, None, routed=False)
        return run.expired()
    try:
        yield Wait(delay, p.counters)
    except BaseException:
        settle(p, run, None, routed=False)
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


def settle(p: Pipeline, run: Run, error: BaseException | None, *, routed: bool) -> None:
    """The picked candidate's call ended: with success (``error`` None), a routed error, or
    no outcome to count (``routed`` False: an unrouted error, a cancellation, Ctrl-C)."""
    candidate = run.picked
    if candidate is None:
        return
    run.picked = None
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
            run.index,
            asked,
            extra={
                "opero_function": p.name,
                "opero_candidate": run.index,
                "opero_delay": asked,
                "opero_reason": "retry_after",
            },
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


def guarded(p: Pipeline, flow: Flow) -> Flow:
    """``flow`` (a whole call) behind the function's own breaker (``circuit_breaker=``).

    Inside the rate limit and around the retries: an open breaker ends the call at
    once with `CircuitOpenError`, before any rate slot or attempt.  The whole call is
    one outcome: a success, one failure when every attempt failed (``AllFailedError``,
    ``DeadlineExceeded``), and none to count (the permit given back) for an error
    that propagates unwrapped, a cancellation or Ctrl-C.
    """
    breaker: BreakerState = p.circuit  # type: ignore[assignment]
    now = clock.now()
    if not breaker.acquire(now):
        next(p.counters.unserved)
        next(p.counters.failures)
        retry_in = None if (at := breaker.reopens_at(now)) is None else at - now
        message = f"the circuit breaker of {p.name} is open"
        if retry_in is not None:
            message += f"; it lets a call through again in {retry_in:.3f}s"
        reopens_at = None if retry_in is None else clock.wall() + retry_in
        yield End(error=CircuitOpenError(message, retry_in=retry_in, reopens_at=reopens_at))
        return
    try:
        step = next(flow)
        while type(step) is not End:
            try:
                sent = yield step
            except BaseException as exc:  # a wait cut short: the engine sees it, then re-raises
                step = flow.throw(exc)
            else:
                step = flow.send(sent)
    except BaseException:
        breaker.release(clock.now())
        raise
    error = step.error
    if error is None:
        breaker.record(clock.now(), failed=False)
    elif isinstance(error, AllFailedError):
        breaker.record(clock.now(), failed=True)
    else:
        breaker.release(clock.now())
    yield step
