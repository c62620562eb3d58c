"""The engine of one call as steps, with no I/O: one engine for both shells.

After the first call of the function raised, :func:`recover` decides
everything that follows: where each error goes (``fallback_on``, ``retry_on``),
which candidate and attempt come next, how long to wait (the backoff, or the
server's ``Retry-After`` if longer), which callback to fire, when to give up.
When a call has a deadline, a result check, a key pool (:mod:`opero.core.pool_flow`)
or ``circuit_breaker=``, :func:`call` runs the whole call this way, its first rate slot
and attempt included.  Both are generators that
*yield* steps (:mod:`opero.core.steps`) and are *sent* what each produced, in the
style of httpx's ``auth_flow``.  The sync and the async shell each drive them with
a few lines (:func:`drive`, :func:`adrive`) that only loop; so retry order,
deadlines, callbacks and accounting exist once.

Otherwise the success path never gets here: the shells make the first call themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opero.core import events
from opero.core.attempts import RATE_LIMIT, noted, pool_wait
from opero.core.drivers import adrive, drive
from opero.core.pool_flow import abandon, choose, guarded, settle
from opero.core.run import Run
from opero.core.steps import (
    Call,
    Check,
    End,
    Fire,
    Flow,
    Pause,
    Reserve,
    Wait,
    is_call_error,
    never_retried,
)
from opero.core.watch import attempt_ended, observed
from opero.exceptions import AllFailedError

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline

__all__ = [
    "Call",
    "End",
    "Fire",
    "Flow",
    "Wait",
    "adrive",
    "call",
    "drive",
    "is_call_error",
    "never_retried",
    "recover",
]


def recover(
    p: Pipeline,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: BaseException,
    *,
    run: Run | None = None,
) -> Flow:
    """Everything after a call of ``p.func`` raised ``error`` (or had its result rejected).

    An error that neither ``fallback_on`` nor ``retry_on`` covers propagates as
    it is (counted, and ``on_failure`` fired, if it is an ``Exception``); a covered
    one moves on to the next candidate or attempt, until one succeeds, every one
    has failed (``AllFailedError``) or the deadline allows no more (``DeadlineExceeded``).
    The candidates are read from ``args`` and ``kwargs`` again, as the first call
    read them (an empty list raises its ``ConfigurationError`` here, unwrapped).
    """
    callbacks = p.callbacks
    if run is None:
        fallback = p.fallback
        run = Run(p, args, kwargs, None if fallback is None else fallback.candidates(args, kwargs))
    while True:
        pooled = run.picked is not None
        if run.cut_by_deadline(error):
            if pooled and (told := settle(p, run, error, routed=False)) is not None:
                yield told  # a pool kept elsewhere is told in a step (pool_flow)
            run.ended(error)
            yield from _fail(p, run.expired(), error)
            return
        to_fallback, to_retry = (
            (False, False)
            if never_retried(error) or is_call_error(error)
            else p.routing.route(error)
        )
        # the candidate learns how its call went (and rests on a Retry-After)
        if pooled and (told := settle(p, run, error, routed=to_fallback or to_retry)):
            yield told
        if not (to_fallback or to_retry):
            yield from _propagate(p, error)
            return
        run.ended(error)  # recorded for AllFailedError.attempts
        delay, asked = run.failed(error, to_fallback=to_fallback, to_retry=to_retry)
        if asked is not None and run.candidates is None:
            yield Pause(p, asked)  # other callers would only earn the same refusal
        if delay is None:
            yield from _fail(p, run.give_up(), error)
            return
        if delay and not run.fits(delay):  # checked before on_retry announces the retry
            yield from _fail(p, run.expired(), error)
            return
        if run.pos == 0 and callbacks.on_retry is not None:
            yield Fire(callbacks.on_retry, error, run.attempt - 1)
        step = yield from _start(p, run, delay, *run.next_args())
        if type(step) is not Call:
            yield from _refused(p, run, step, error)
            return
        failed = yield from _attempt(p, run, step)
        if failed is None:
            return
        error = failed


def call(p: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Flow:
    """A whole call, from its first rate slot: a deadline, a result check, a key pool.

    The deadline counts from here, so the rate-limit wait is inside it.  With
    ``circuit_breaker=`` the whole call runs behind it (`guarded`).
    """
    flow = _whole(p, args, kwargs)
    flow = flow if p.circuit is None else guarded(p, flow)
    return observed(p, flow) if events.on else flow  # instrumentation: opero.core.watch


def _whole(p: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Flow:
    run = Run(p, args, kwargs, None)
    try:
        if p.pool is not None and p.fallback is not None:  # the pool picks the first candidate
            run.candidates = p.fallback.candidates(args, kwargs)
        step = yield from _start(p, run, 0.0, args, kwargs, first=True)
    except BaseException:
        next(p.counters.unserved)
        raise
    if type(step) is not Call:  # past the deadline, or no candidate: the function never ran
        next(p.counters.unserved)
        yield from _refused(p, run, step, None)
        return
    next(p.counters.entries)
    if run.picked is None:  # (a pool's pick already has its candidate in place)
        step.args, step.kwargs, run.candidates = p.first_call(args, kwargs)  # as the shell does
    error = yield from _attempt(p, run, step)
    if error is not None:
        yield from recover(p, args, kwargs, error, run=run)


def _attempt(p: Pipeline, run: Run, step: Call) -> Any:  # a sub-flow: the error, or None
    """Make the call ``step``; None once the call has ended with its result, else its error
    (what it raised, or the `ResultRejected` standing for a result ``retry_if_result`` refused).
    """
    ok, outcome = yield step
    if events.on:
        attempt_ended(p, run, ok, outcome)
    if ok:
        rejected = yield from _rejected(p, run, outcome)
        if rejected is None:
            if run.picked is not None and (told := settle(p, run, None, routed=True)):
                yield told
            yield from _succeed(p, outcome)
            return None
        return rejected
    return outcome


def _start(
    p: Pipeline,
    run: Run,
    delay: float,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    first: bool = False,
) -> Any:  # a sub-flow whose value is the next Call, or None: past the deadline
    """Wait ``delay``, take a rate slot, then the `Call` to yield; each wait within the deadline.

    The slot is booked with the call's own arguments (a ``per_args`` scope), after
    the backoff, so the start it books is the one that happens.  None when a wait
    would end past the deadline (it is not started) or the deadline has passed.
    """
    if delay:
        yield Wait(delay, p.counters)
    if p.pool is not None and run.candidates is not None:
        picking = choose(p, run)
        if run.trail is not None:  # what the pool waits for belongs to the last attempt's record
            picking = noted(picking, lambda seconds: run.waiting(seconds, pool_wait(run)))
        refused = yield from picking
        if refused is not None:
            return refused
        args, kwargs = run.next_args()
    try:
        if first or p.per_attempt or p.limiter is None:
            rate_wait = yield Reserve(p, run.args, run.kwargs)
            if rate_wait > 0:
                if not run.fits(rate_wait):
                    if (told := settle(p, run, None, routed=False)) is not None:
                        yield told
                    return None
                run.waiting(rate_wait, RATE_LIMIT)
                yield Wait(rate_wait, p.counters)
    except BaseException:
        abandon(p, run)
        raise
    step = run.call(args, kwargs)
    if step is None:
        if (told := settle(p, run, None, routed=False)) is not None:
            yield told
    elif not first:
        run.count_start()
    return step


def _refused(p: Pipeline, run: Run, ending: Any, error: BaseException | None) -> Flow:
    """End a call no call could be started for: past the deadline (``ending`` None), or
    the error a key pool ended it with (`CircuitOpenError`, ``AllFailedError``)."""
    if ending is None:
        ending = run.expired()
    if isinstance(ending, AllFailedError):
        yield from _fail(p, ending, error)
        return
    if p.callbacks.on_failure is not None:
        yield Fire(p.callbacks.on_failure, ending)
    yield End(error=ending)


def _rejected(p: Pipeline, run: Run, result: Any) -> Any:  # a sub-flow: the error, or None
    """``retry_if_result`` said "try again" to ``result``: the error standing for it, else None."""
    check = p.routing.result_check
    if check is None:
        return None
    verdict = yield Check(check, result)
    return run.rejected(result) if verdict else None


def _propagate(p: Pipeline, error: BaseException) -> Flow:
    """End the call with ``error`` itself: no setting routes it (or it is an interrupt)."""
    if isinstance(error, Exception):  # interrupts are not the function's failures
        p.non_retryable(error)
        if p.callbacks.on_failure is not None:
            yield Fire(p.callbacks.on_failure, error)
    yield End(error=error)


def _succeed(p: Pipeline, result: Any) -> Flow:
    if p.callbacks.on_success is not None:
        yield Fire(p.callbacks.on_success, result)
    yield End(result)


def _fail(p: Pipeline, failure: AllFailedError, error: BaseException | None) -> Flow:
    """End the call with ``failure`` (``AllFailedError`` or ``DeadlineExceeded``).

    Its cause is ``error``, or the last error so far when the deadline ended a wait.
    """
    failure.__cause__ = error if error is not None else failure.last_error
    if p.callbacks.on_failure is not None:
        yield Fire(p.callbacks.on_failure, failure)
    yield End(error=failure)
