"""``circuit_breaker=``: the function's own breaker around a whole call (the engine's part).

Split from :mod:`opero.core.pool_flow` (which re-exports `guarded`).  Like the rest of
the engine it does no I/O: a breaker kept elsewhere (redis, a map's parent; it has a
``lane``) is asked in `Remote` steps, which the async driver makes on that lane
(:mod:`opero.core.lane`); a breaker in this process is asked in place, with no step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opero.core import clock
from opero.core.breaker_state import BreakerState
from opero.core.steps import End, Remote
from opero.exceptions import AllFailedError, CircuitOpenError

if TYPE_CHECKING:
    from collections.abc import Callable

    from opero.core.lane import Lane
    from opero.core.pipeline import Pipeline
    from opero.core.steps import Flow

__all__ = ["guarded"]


def guarded(p: Pipeline, flow: Flow) -> Flow:
    """``flow`` (a whole call) behind the function's own breaker (``circuit_breaker=``).

    Inside the rate limit and around the retries: an open breaker ends the call at
    once with `CircuitOpenError`, before any rate slot or attempt.  The whole call is
    one outcome: a success, one failure when every attempt failed (``AllFailedError``,
    ``DeadlineExceeded``), and none to count (the permit given back) for an error
    that propagates unwrapped, a cancellation or Ctrl-C.  A breaker kept elsewhere is
    asked in `Remote` steps.
    """
    breaker: BreakerState = p.circuit  # type: ignore[assignment]
    # (a type check: getattr with a default costs a caught AttributeError on every call)
    lane: Lane | None = None if type(breaker) is BreakerState else breaker.lane
    now = clock.now()
    if lane is None:
        permitted = breaker.acquire(now)
    else:
        held: list[bool] = []
        try:
            permitted = yield Remote(lane, _acquired, breaker, now, held)
        except BaseException:  # the acquire may go on on the lane: its permit goes back after
            lane.later(_unheld, (breaker, held))
            raise
    if not permitted:
        yield End(error=_open(p, breaker, now))
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
        _tell(lane, breaker.release, clock.now())
        raise
    error = step.error
    if error is not None and not isinstance(error, AllFailedError):
        told: tuple[Callable[..., Any], tuple[Any, ...]] = (breaker.release, (clock.now(),))
    else:
        told = (breaker.record, (clock.now(), error is not None))
    if lane is None:
        told[0](*told[1])
    else:
        yield Remote(lane, told[0], *told[1])
    yield step


def _open(p: Pipeline, breaker: BreakerState, now: float) -> CircuitOpenError:
    """The error of a call the open breaker refused (counted as unserved and failed)."""
    next(p.counters.unserved)
    next(p.counters.failures)
    retry_in = None if (at := breaker.reopens_at(now)) is None else at - now
    message = f"the circuit breaker of {p.name} is open"
    if retry_in is not None:
        message += f"; it lets a call through again in {retry_in:.3f}s"
    reopens_at = None if retry_in is None else clock.wall() + retry_in
    return CircuitOpenError(message, retry_in=retry_in, reopens_at=reopens_at)


def _acquired(breaker: BreakerState, now: float, held: list[bool]) -> bool:
    """``breaker.acquire``, noting in ``held`` that a permit was taken."""
    permitted = breaker.acquire(now)
    if permitted:
        held.append(True)
    return permitted


def _unheld(breaker: BreakerState, held: list[bool]) -> None:
    """A permit its caller stopped waiting for goes back."""
    if held:
        breaker.release(clock.now())


def _tell(lane: Lane | None, fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` on the way out of a call: now, or without waiting on ``lane``."""
    if lane is None:
        fn(*args)
    else:
        lane.later(fn, args)
