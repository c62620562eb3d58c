"""The engine's side of instrumentation: each kind of event built and sent from one place.

Only reached behind ``if events.on:``.  While anyone listens, the shells hand every
call to the engine (:func:`opero.core.flow.call`), which wraps its flow in
:func:`observed`: a generator with no I/O that passes each step through to the
driver, so it sees the call's start and end (`CallEnded`, and the tracer's span
around it), every wait (`Waited`, with its reason) and every attempt, for sync and
async calls alike.  ``flow._attempt`` reports each attempt (`attempt_ended`: it
knows the round and the candidate), the cache step each lookup (`cache_lookup`),
the breakers' change callbacks each transition (`breaker_changed`), a map its end
(`map_ended`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opero.core import clock, events
from opero.core.events import (
    AttemptEnded,
    BreakerChanged,
    CacheLookup,
    CallEnded,
    MapEnded,
    Waited,
    WaitReason,
)
from opero.core.steps import Call, End, Flow, Reserve, Wait

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline
    from opero.core.run import Run

__all__ = [
    "attempt_ended",
    "breaker_changed",
    "cache_lookup",
    "map_ended",
    "observed",
    "unspanned",
]


def unspanned(p: Pipeline) -> None:
    """``p``'s calls get no span of their own: a map's items (the map has one span).

    Kept on the pipeline (its one field set after construction): a set of ids, as
    before, named pipelines long gone whose ids a new function's pipeline then reused.
    """
    object.__setattr__(p, "spans", False)  # Frozen forbids a plain setattr


def observed(p: Pipeline, flow: Flow) -> Flow:
    """``flow`` passed through step by step, reporting its waits and its end (and a span)."""
    tracer = events.tracer if p.spans else None
    handle = None
    if tracer is not None:
        circuit = p.circuit  # the function's breaker as the call starts (changes: events)
        handle = tracer.start(p.name, None if circuit is None else circuit.state(clock.now()))
    began = clock.now()
    attempts, error, after_reserve = 0, None, False
    try:
        step: Any = next(flow)
        while type(step) is not End:
            kind = type(step)
            try:
                outcome = yield step
            except BaseException as exc:
                if kind is Wait:  # cut short (cancelled, Ctrl-C): what it did wait
                    _waited(p, clock.now() - step.since, _reason(p, error, after_reserve))
                step = flow.throw(exc)
                continue
            if kind is Call:
                attempts += 1
                error = None if outcome[0] else outcome[1]
            elif kind is Wait:
                _waited(p, step.seconds, _reason(p, error, after_reserve))
            after_reserve = kind is Reserve and outcome > 0
            step = flow.send(outcome)
    except BaseException as exc:
        _ended(p, (tracer, handle), began, attempts, exc)
        raise
    _ended(p, (tracer, handle), began, attempts, step.error)
    yield step


def _reason(p: Pipeline, error: BaseException | None, after_reserve: bool) -> WaitReason:
    if after_reserve:
        return "rate_limit"
    if error is not None and p.retry.server_wait(error)[0] is not None:
        return "retry_after"
    return "backoff"


def _waited(p: Pipeline, seconds: float, reason: WaitReason) -> None:
    events.emit(
        Waited(function=p.name, correlation_id=events.correlation(), reason=reason, seconds=seconds)
    )


def _ended(
    p: Pipeline,
    span: tuple[events.Tracer | None, Any],
    began: float,
    attempts: int,
    error: BaseException | None,
) -> None:
    if error is None:
        outcome: events.Outcome = "success"
    else:
        from opero.exceptions import AllFailedError  # noqa: PLC0415 - errors only

        outcome = "failure" if isinstance(error, AllFailedError) else "error"
    event = CallEnded(
        function=p.name,
        correlation_id=events.correlation(),
        outcome=outcome,
        duration=clock.now() - began,
        attempts=attempts,
        error_type=None if error is None else type(error).__qualname__,
    )
    tracer, handle = span
    if tracer is not None:
        tracer.end(handle, event)
    events.emit(event)


def attempt_ended(p: Pipeline, run: Run, ok: bool, outcome: Any) -> None:
    """Report the attempt ``run`` just made (``ok``: it returned; ``outcome``: what, or its error).

    It began at ``run.began`` (`Run.call`; the engine makes every call while anyone listens).
    """
    now = clock.now()
    began = now if run.began is None else run.began
    first_of_round = run.pos == 0
    events.emit(
        AttemptEnded(
            function=p.name,
            correlation_id=events.correlation(),
            attempt=run.attempt,
            candidate=run.index if run.candidates is not None else None,
            kind="fallback" if not first_of_round else "first" if run.attempt == 1 else "retry",
            ok=ok,
            started=clock.wall() - (now - began),
            duration=now - began,
            error_type=None if ok else type(outcome).__qualname__,
        )
    )


def cache_lookup(p: Pipeline, *, hit: bool) -> None:
    """Report a cache hit or a miss of ``p``'s cache (a hit outside a map: with its span)."""
    tracer = events.tracer
    if hit and tracer is not None and p.spans:
        tracer.hit(p.name)
    events.emit(CacheLookup(function=p.name, correlation_id=events.correlation(), hit=hit))


def breaker_changed(name: str, candidate: int | None, old: str, new: str) -> None:
    """Report a breaker's transition: a candidate's by index, or the function's (None)."""
    events.emit(
        BreakerChanged(
            function=name,
            correlation_id=events.correlation(),
            candidate=candidate,
            old=str(old),
            new=str(new),
        )
    )


def map_ended(p: Pipeline, mode: str, results: list[Any], began: float) -> None:
    """Report a map over a list: its items and how many ended with an error."""
    failures = sum(1 for value in results if isinstance(value, BaseException))
    events.emit(
        MapEnded(
            function=p.name,
            correlation_id=events.correlation(),
            mode=mode,
            items=len(results),
            failures=failures,
            duration=clock.now() - began,
        )
    )
