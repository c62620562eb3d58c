"""The two drivers of the call engine: the only code that calls, sleeps and awaits for it.

:func:`drive` runs an engine (:mod:`opero.core.flow`) in the calling thread,
:func:`adrive` in the calling task; each does what a step asks and sends back
what it produced.  An error raised while waiting (a cancelled task, Ctrl-C) is
thrown into the engine where it waited, so the engine accounts it once.  Also
here: the call functions of pipelines that run whole in the engine, and the
wait for a paused function's first attempt, for the shells.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from opero.core import clock
from opero.core.steps import Call, Check, End, Flow, Pause, Reserve, Wait

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline

__all__ = ["adrive", "ahold", "drive", "hold", "whole_async", "whole_sync"]


def drive(flow: Flow, fn: Callable[..., Any]) -> Any:
    """Run ``flow`` in this thread: call ``fn``, sleep, reserve, fire; return or raise its end."""
    step = next(flow)
    while type(step) is not End:
        outcome: Any = None
        if type(step) is Call:
            try:
                outcome = True, _call(fn, step)
            except BaseException as exc:
                outcome = False, exc
        else:
            try:
                outcome = _do(step)
            except BaseException as exc:  # the engine sees it where it waited, then re-raises
                step = flow.throw(exc)
                continue
        step = flow.send(outcome)
    if step.error is not None:
        raise step.error
    return step.value


def _call(fn: Callable[..., Any], step: Call) -> Any:
    if step.until is None:
        return fn(*step.args, **step.kwargs)
    from opero.core.deadline import attempt_bound  # noqa: PLC0415 - bounded calls only
    from opero.core.timeouts import call_within  # noqa: PLC0415

    if step.cut:  # on a worker thread, abandoned at the end; it sees the end in remaining()
        return call_within(fn, step.args, step.kwargs, step.until - clock.now())
    with attempt_bound(step.until):  # a deadline alone: in this thread, not cut
        return fn(*step.args, **step.kwargs)


def _do(step: Any) -> Any:
    kind = type(step)
    if kind is Wait:
        step.sleep()
    elif kind is Reserve:
        return step.pipeline.reserve(step.args, step.kwargs)
    elif kind is Pause:
        step.pipeline.pause(step.seconds)
    elif kind is Check:
        return bool(step.predicate(step.value))
    else:
        step.callback.fire(*step.args)
    return None


async def adrive(flow: Flow, fn: Callable[..., Awaitable[Any]]) -> Any:
    """Run ``flow`` in this task: await ``fn``, sleep without blocking, reserve, fire and await."""
    step = next(flow)
    while type(step) is not End:
        outcome: Any = None
        if type(step) is Call:
            try:
                outcome = True, await _acall(fn, step)
            except BaseException as exc:
                outcome = False, exc
        else:
            try:
                outcome = await _ado(step)
            except BaseException as exc:  # the engine sees it where it waited, then re-raises
                step = flow.throw(exc)
                continue
        step = flow.send(outcome)
    if step.error is not None:
        raise step.error
    return step.value


async def _acall(fn: Callable[..., Awaitable[Any]], step: Call) -> Any:
    if step.until is None:
        return await fn(*step.args, **step.kwargs)
    from opero.core.timeouts import acall_within  # noqa: PLC0415 - bounded calls only

    return await acall_within(fn, step.args, step.kwargs, step.until - clock.now())


async def _ado(step: Any) -> Any:
    kind = type(step)
    if kind is Wait:
        await step.asleep()
    elif kind is Reserve:
        return await step.pipeline.areserve(step.args, step.kwargs)
    elif kind is Pause:
        await step.pipeline.apause(step.seconds)
    elif kind is Check:
        import inspect  # noqa: PLC0415 - result checks only; keeps `import opero` light

        verdict = step.predicate(step.value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)
    else:
        await step.callback.fire_async(*step.args)
    return None


def whole_sync(p: Pipeline) -> Callable[..., Any]:
    """The call function of a sync pipeline that runs whole in the engine (`Pipeline.engine`)."""
    from opero.core.flow import call  # noqa: PLC0415 - flow imports this module

    fn = p.func

    def whole(*args: Any, **kwargs: Any) -> Any:
        return drive(call(p, args, kwargs), fn)

    return whole


def whole_async(p: Pipeline) -> Callable[..., Awaitable[Any]]:
    """The call function of an async pipeline that runs whole in the engine."""
    from opero.core.flow import call  # noqa: PLC0415 - flow imports this module

    if p.deadline is None and p.routing.result_check is None:
        return _timed_async(p)
    fn = p.func

    async def whole(*args: Any, **kwargs: Any) -> Any:
        return await adrive(call(p, args, kwargs), fn)

    return whole


def _timed_async(p: Pipeline) -> Callable[..., Awaitable[Any]]:
    """``attempt_timeout`` alone on an async function: the first attempt as the shell makes it.

    With neither a deadline nor a result check the first attempt needs nothing
    of the engine but the cut, and the engine's generators cost some 6 us a
    call; so it is the shell's first call with ``acall_within`` around it, and
    only a failure goes on to :func:`~opero.core.flow.recover`.
    """
    from opero.core.flow import recover  # noqa: PLC0415 - flow imports this module
    from opero.core.timeouts import acall_within  # noqa: PLC0415 - timed functions only

    fn, timeout, entries = p.func, p.attempt_timeout or 0.0, p.counters.entries
    has_fallback, on_success = p.fallback is not None, p.callbacks.on_success
    gate, limited = p.gate, p.limiter is not None

    async def timed(*args: Any, **kwargs: Any) -> Any:
        if limited or gate.until:
            await _afirst_slot(p, args, kwargs)
        next(entries)
        call_args, call_kwargs, candidates = (
            p.first_call(args, kwargs) if has_fallback else (args, kwargs, None)
        )
        try:
            result = await acall_within(fn, call_args, call_kwargs, timeout)
        except BaseException as exc:
            error = exc
        else:
            if on_success is not None:
                await on_success.fire_async(result)
            return result
        return await adrive(recover(p, args, kwargs, candidates, error), fn)

    return timed


async def _afirst_slot(p: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Wait for the first attempt's rate slot (or the function's pause); unserved if cut short."""
    try:
        delay = await p.areserve(args, kwargs)
        if delay > 0:
            await Wait(delay, p.counters).asleep()
    except BaseException:
        next(p.counters.unserved)
        raise


def hold(p: Pipeline) -> None:
    """Wait out the function's pause (a server's ``Retry-After``) before its first attempt.

    The shell calls it only when ``p.gate.until`` is set, so an unpaused call
    reads no clock.  A wait cut short leaves the call unserved.
    """
    try:
        delay = p.gate.wait(clock.now())
        if delay > 0:
            Wait(delay, p.counters).sleep()
    except BaseException:
        next(p.counters.unserved)
        raise


async def ahold(p: Pipeline) -> None:
    """:func:`hold` for async functions: the pause is waited without blocking the loop."""
    try:
        delay = p.gate.wait(clock.now())
        if delay > 0:
            await Wait(delay, p.counters).asleep()
    except BaseException:
        next(p.counters.unserved)
        raise
