"""The steps of a call's engine (:mod:`opero.core.flow`): what a driver is asked to do.

Each step is one thing only a driver can do, because it calls, sleeps or
awaits: `Call` the function, `Wait`, `Reserve` a rate slot, `Pause` the
rate-limit scope, `Check` a result, `Fire` a callback, ask a key pool kept elsewhere
(`Remote`).  `End` carries the
outcome.  The engine yields them and is sent back what each produced.

Each step does itself: ``do()`` in the calling thread, ``ado()`` in the calling
task, each a line or two over the one I/O call it stands for.  So the drivers
(:mod:`opero.core.drivers`) only loop, and no dispatch on the kind of step is
written twice.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, final

from opero.core import clock

if TYPE_CHECKING:
    from opero.core.callbacks import Callback
    from opero.core.lane import Lane
    from opero.core.pipeline import Pipeline
    from opero.core.stats import Counters

__all__ = [
    "Call",
    "Check",
    "End",
    "Fire",
    "Flow",
    "Pause",
    "Remote",
    "Reserve",
    "Wait",
    "is_call_error",
    "never_retried",
]


@final
class Call:
    """Call the function; send back ``(True, result)`` or ``(False, exc)``.

    ``until`` is the attempt's end in clock time (None: unbounded), which
    ``opero.remaining()`` shows inside it; with ``cut`` the driver also stops
    waiting for the attempt then (``attempt_timeout=``, or a deadline on async code).
    """

    __slots__ = ("args", "cut", "fn", "kwargs", "until")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        until: float | None = None,
        *,
        cut: bool = False,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.until = until
        self.cut = cut

    def do(self) -> tuple[bool, Any]:
        """Make the call in this thread (a cut one on a worker thread); never raises."""
        try:
            return True, self._result()
        except BaseException as exc:
            return False, exc

    async def ado(self) -> tuple[bool, Any]:
        """Await the call in this task (cut at ``until``); never raises."""
        try:
            return True, await self._awaitable()
        except BaseException as exc:
            return False, exc

    def _result(self) -> Any:
        if self.until is None:
            return self.fn(*self.args, **self.kwargs)
        from opero.core.deadline import attempt_bound  # noqa: PLC0415 - bounded calls only
        from opero.core.timeouts import call_within  # noqa: PLC0415

        if self.cut:  # on a worker thread, abandoned at the end; it sees the end in remaining()
            return call_within(self.fn, self.args, self.kwargs, self.until - clock.now())
        with attempt_bound(self.until):  # a deadline alone: in this thread, not cut
            return self.fn(*self.args, **self.kwargs)

    def _awaitable(self) -> Awaitable[Any]:
        if self.until is None:
            return self.fn(*self.args, **self.kwargs)  # type: ignore[no-any-return]
        from opero.core.timeouts import acall_within  # noqa: PLC0415 - bounded calls only

        return acall_within(self.fn, self.args, self.kwargs, self.until - clock.now())


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

    do = sleep
    ado = asleep


@final
class Reserve:
    """Book the next start with the rate limit (or the function's pause); send back the wait."""

    __slots__ = ("args", "kwargs", "pipeline")

    def __init__(self, pipeline: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.args = args
        self.kwargs = kwargs

    def do(self) -> float:
        """The seconds to wait for the slot."""
        return self.pipeline.reserve(self.args, self.kwargs)

    async def ado(self) -> float:
        """:meth:`do`, a shared limiter asked without blocking the loop."""
        return await self.pipeline.areserve(self.args, self.kwargs)


@final
class Pause:
    """A server asked for ``seconds``: pause the function's rate-limit scope (or the function)."""

    __slots__ = ("pipeline", "seconds")

    def __init__(self, pipeline: Pipeline, seconds: float) -> None:
        self.pipeline = pipeline
        self.seconds = seconds

    def do(self) -> None:
        """Pause the scope."""
        self.pipeline.pause(self.seconds)

    async def ado(self) -> None:
        """:meth:`do`, a shared limiter told without blocking the loop."""
        await self.pipeline.apause(self.seconds)


@final
class Remote:
    """Ask a key pool kept elsewhere (redis, a map's parent): ``fn(*args)``; send back its result.

    ``fn`` is the engine's own rule (take a candidate, settle an outcome, a circuit's
    acquire or record: :mod:`opero.core.pool_flow`), the same for both drivers; only
    where its round trips are made differs.  Pools in this process never yield one.
    """

    __slots__ = ("args", "fn", "lane")

    def __init__(self, lane: Lane, fn: Callable[..., Any], *args: Any) -> None:
        self.lane, self.fn, self.args = lane, fn, args

    def do(self) -> Any:
        """Make the round trips in this thread."""
        return self.fn(*self.args)

    async def ado(self) -> Any:
        """Make them on the pool's lane (:mod:`opero.core.lane`): the loop runs on."""
        return await self.lane.run(self.fn, self.args)

    def later(self) -> None:
        """Make them without waiting (on a cancel, Ctrl-C): queued on the lane from a loop."""
        self.lane.later(self.fn, self.args)


@final
class Check:
    """Ask ``retry_if_result`` about ``value`` (awaited if it is async); send back its verdict."""

    __slots__ = ("predicate", "value")

    def __init__(self, predicate: Callable[[Any], Any], value: Any) -> None:
        self.predicate = predicate
        self.value = value

    def do(self) -> bool:
        """The verdict: True to reject the result."""
        return bool(self.predicate(self.value))

    async def ado(self) -> bool:
        """The verdict of a sync or async predicate."""
        import inspect  # noqa: PLC0415 - result checks only; keeps `import opero` light

        verdict = self.predicate(self.value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)


@final
class Fire:
    """Fire a user callback (it never raises: a failing callback is logged)."""

    __slots__ = ("args", "callback")

    def __init__(self, callback: Callback, *args: Any) -> None:
        self.callback = callback
        self.args = args

    def do(self) -> None:
        """Fire it in this thread."""
        self.callback.fire(*self.args)

    async def ado(self) -> None:
        """Fire it, an async callback awaited."""
        await self.callback.fire_async(*self.args)


@final
class End:
    """The call's outcome: its result, or the error to raise (``error`` is not None)."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def outcome(self) -> Any:
        """The call's result, or raise its error (what a driver returns)."""
        if self.error is not None:
            raise self.error
        return self.value


Step = Call | Wait | Reserve | Pause | Check | Fire | Remote | End
#: A call's engine: yields steps, is sent what each produced (None for `Wait`, `Pause`, `Fire`).
Flow = Generator[Step, Any, None]


def is_call_error(error: BaseException) -> bool:
    """A TypeError raised by the call itself (arguments that do not fit), not inside the function.

    Such a call can never succeed, so it is not retried.  The traceback tells: its
    innermost frame is opero's own (the shell, a driver, the timeout helpers that
    make the call) instead of one inside the function.
    """
    tb = error.__traceback__
    if type(error) is not TypeError or tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("opero.")


def never_retried(error: BaseException) -> bool:
    """Ctrl-C, ``sys.exit``, a closed generator or a cancelled task: never retried or wrapped.

    ``retry_on=BaseException`` (or a predicate saying yes to anything) would catch
    them; retrying one would make an ``except Exception`` around the call swallow
    an interrupt (CONTRACT 32).
    """
    if isinstance(error, Exception):
        return False
    if isinstance(error, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return True
    asyncio = sys.modules.get("asyncio")  # a cancelled task implies asyncio is loaded
    return asyncio is not None and isinstance(error, asyncio.CancelledError)
