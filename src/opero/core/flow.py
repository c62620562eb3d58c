"""The failure path of one call as steps, with no I/O: one engine for both shells.

After the first call of the function raised, :func:`recover` decides
everything that follows: which error is retried, which candidate and attempt
come next, how long to wait, which callback to fire, when to give up.  It is
a generator that *yields* steps (`Call`, `Wait`, `Fire`, `End`) and is *sent*
each call's outcome, in the style of httpx's ``auth_flow``.  The sync and the
async shell each drive it with a few lines (:func:`drive`, :func:`adrive`)
that only call, sleep or await; so retry order, callbacks and accounting
exist once.  Deadlines, Retry-After and candidate health fit in here as
inputs, with no code in either shell.

The success path never gets here: the shells make the first call themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, final

from opero.core import clock
from opero.core.run import Run

if TYPE_CHECKING:
    from opero.core.callbacks import Callback
    from opero.core.pipeline import Pipeline
    from opero.core.stats import Counters

__all__ = [
    "Call",
    "End",
    "Fire",
    "Flow",
    "Wait",
    "adrive",
    "drive",
    "is_call_error",
    "never_retried",
    "recover",
]


@final
class Call:
    """Call the function with these arguments; send back ``(True, result)`` or ``(False, exc)``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs


@final
class Wait:
    """Wait ``seconds`` (backoff, a fallback pause, a rate-limit slot), accounted once waited.

    A wait cut short (a cancelled task, Ctrl-C) counts only the time spent.
    """

    __slots__ = ("counters", "seconds", "since")

    def __init__(self, seconds: float, counters: Counters) -> None:
        self.seconds = seconds
        self.counters = counters
        self.since = clock.now()

    def sleep(self) -> None:
        """Block this thread for the wait."""
        try:
            clock.sleep(self.seconds)
        except BaseException:
            self.counters.waited_for(self.seconds, self.since)
            raise
        self.counters.add_wait(self.seconds)

    async def asleep(self) -> None:
        """Suspend this task for the wait; the loop keeps running."""
        try:
            await clock.async_sleep(self.seconds)
        except BaseException:
            self.counters.waited_for(self.seconds, self.since)
            raise
        self.counters.add_wait(self.seconds)


@final
class Fire:
    """Fire a user callback (it never raises: a failing callback is logged)."""

    __slots__ = ("args", "callback")

    def __init__(self, callback: Callback, *args: Any) -> None:
        self.callback = callback
        self.args = args


@final
class End:
    """The call's outcome: its result, or the error to raise (``error`` is not None)."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


Step = Call | Wait | Fire | End
#: A failure path: yields steps, is sent the outcome of each `Call` (None for other steps).
Flow = Generator[Step, Any, None]


def is_call_error(error: BaseException) -> bool:
    """A TypeError raised by the call itself (arguments that do not fit), not inside the function.

    Such a call can never succeed, so it is not retried.  The traceback tells:
    it stops at the shell's (or driver's) own frame instead of reaching into the function.
    """
    tb = error.__traceback__
    return type(error) is TypeError and tb is not None and tb.tb_next is None


def never_retried(error: BaseException) -> bool:
    """Ctrl-C, ``sys.exit``, a closed generator or a cancelled task: never retried or wrapped.

    ``retry_on=BaseException`` would catch them; retrying one would make an
    ``except Exception`` around the call swallow an interrupt.
    """
    if isinstance(error, Exception):
        return False
    if isinstance(error, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return True
    asyncio = sys.modules.get("asyncio")  # a cancelled task implies asyncio is loaded
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


def recover(
    p: Pipeline,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    candidates: Sequence[Any] | None,
    error: BaseException,
) -> Flow:
    """Everything after a first call of ``p.func(*args, **kwargs)`` raised ``error``.

    An error ``retry_on`` does not cover propagates as it is (counted, and
    ``on_failure`` fired, if it is an ``Exception``); a covered one moves on to
    the next candidate or attempt, until one succeeds or every one has failed.
    """
    retry_on, callbacks = p.retry.retry_on, p.callbacks
    run = Run(p, args, kwargs, candidates)
    while True:
        if not isinstance(error, retry_on) or is_call_error(error) or never_retried(error):
            if isinstance(error, Exception):  # interrupts are not the function's failures
                p.non_retryable(error)
                if callbacks.on_failure is not None:
                    yield Fire(callbacks.on_failure, error)
            yield End(error=error)
        delay = run.failed(error)
        if delay is None:
            failure = run.give_up()
            failure.__cause__ = error
            if callbacks.on_failure is not None:
                yield Fire(callbacks.on_failure, failure)
            yield End(error=failure)
        if run.index == 0 and callbacks.on_retry is not None:
            yield Fire(callbacks.on_retry, error, run.attempt - 1)
        if delay:
            yield Wait(delay, p.counters)
        call_args, call_kwargs = run.call_args()
        ok, outcome = yield Call(call_args, call_kwargs)
        if ok:
            if callbacks.on_success is not None:
                yield Fire(callbacks.on_success, outcome)
            yield End(outcome)
        error = outcome


def drive(flow: Flow, fn: Callable[..., Any]) -> Any:
    """Run ``flow`` in this thread: call ``fn``, sleep, fire; return or raise its end."""
    step = next(flow)
    while type(step) is not End:
        outcome = None
        if type(step) is Call:
            try:
                outcome = True, fn(*step.args, **step.kwargs)
            except BaseException as exc:
                outcome = False, exc
        elif type(step) is Wait:
            step.sleep()
        else:
            step.callback.fire(*step.args)
        step = flow.send(outcome)
    if step.error is not None:
        raise step.error
    return step.value


async def adrive(flow: Flow, fn: Callable[..., Awaitable[Any]]) -> Any:
    """Run ``flow`` in this task: await ``fn``, sleep without blocking, fire and await."""
    step = next(flow)
    while type(step) is not End:
        outcome = None
        if type(step) is Call:
            try:
                outcome = True, await fn(*step.args, **step.kwargs)
            except BaseException as exc:
                outcome = False, exc
        elif type(step) is Wait:
            await step.asleep()
        else:
            await step.callback.fire_async(*step.args)
        step = flow.send(outcome)
    if step.error is not None:
        raise step.error
    return step.value
