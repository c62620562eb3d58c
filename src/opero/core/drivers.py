"""The two drivers of the call engine: the only code that calls, sleeps and awaits for it.

:func:`drive` runs an engine (:mod:`opero.core.flow`) in the calling thread,
:func:`adrive` in the calling task; each has a step do itself (``do()`` or
``ado()``, :mod:`opero.core.steps`) and sends back what it produced.  An error
raised while waiting (a cancelled task, Ctrl-C) is thrown into the engine where it
waited, so the engine accounts it once.  Also here: the call functions of
pipelines that run whole in the engine, and the wait for a first attempt's rate
slot (or a paused function's pause), for the shells.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from opero.core.steps import End, Flow, Wait

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline

__all__ = ["adrive", "afirst_slot", "drive", "first_slot", "whole_async", "whole_sync"]


def drive(flow: Flow) -> Any:
    """Run ``flow`` in this thread: call, sleep, reserve, fire; return or raise its end."""
    step: Any = next(flow)
    while type(step) is not End:
        try:
            outcome = step.do()
        except BaseException as exc:  # the engine sees it where it waited, then re-raises
            step = flow.throw(exc)
        else:
            step = flow.send(outcome)
    return step.outcome()


async def adrive(flow: Flow) -> Any:
    """Run ``flow`` in this task: await the call, sleep without blocking, reserve, fire."""
    step: Any = next(flow)
    while type(step) is not End:
        try:
            outcome = await step.ado()
        except BaseException as exc:  # the engine sees it where it waited, then re-raises
            step = flow.throw(exc)
        else:
            step = flow.send(outcome)
    return step.outcome()


def whole_sync(p: Pipeline) -> Callable[..., Any]:
    """The call function of a sync pipeline that runs whole in the engine (a deadline or a
    result check)."""
    from opero.core.flow import call  # noqa: PLC0415 - flow imports this module

    def whole(*args: Any, **kwargs: Any) -> Any:
        return drive(call(p, args, kwargs))

    return whole


def whole_async(p: Pipeline) -> Callable[..., Awaitable[Any]]:
    """The call function of an async pipeline that runs whole in the engine."""
    from opero.core.flow import call  # noqa: PLC0415 - flow imports this module

    async def whole(*args: Any, **kwargs: Any) -> Any:
        return await adrive(call(p, args, kwargs))

    return whole


def first_slot(p: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Wait for the first attempt's rate slot, or the function's pause (a server's
    ``Retry-After``) when it has no rate limit; a wait cut short leaves the call unserved.

    The shell asks only with a limiter or while ``p.gate.until`` is set, so an
    unpaused call of a function without a rate limit reads no clock.
    """
    try:
        delay = p.reserve(args, kwargs)
        while delay > 0:  # then a pause that began while it waited (see Pipeline.held)
            Wait(delay, p.counters).sleep()
            delay = p.held()
    except BaseException:
        next(p.counters.unserved)
        raise


async def afirst_slot(p: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """:func:`first_slot` for async functions: a shared limiter asked, the wait made, without
    blocking the loop."""
    try:
        delay = await p.areserve(args, kwargs)
        while delay > 0:
            await Wait(delay, p.counters).asleep()
            delay = p.held()
    except BaseException:
        next(p.counters.unserved)
        raise
