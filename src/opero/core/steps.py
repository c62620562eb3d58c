"""The steps of a call's engine (:mod:`opero.core.flow`): what a driver is asked to do.

Each step is one thing only a driver can do, because it calls, sleeps or
awaits: `Call` the function, `Wait`, `Reserve` a rate slot, `Pause` the
rate-limit scope, `Check` a result, `Fire` a callback.  `End` carries the
outcome.  The engine yields them and is sent back what each produced.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, final

from opero.core import clock

if TYPE_CHECKING:
    from opero.core.callbacks import Callback
    from opero.core.pipeline import Pipeline
    from opero.core.stats import Counters

__all__ = [
    "Call",
    "Check",
    "End",
    "Fire",
    "Flow",
    "Pause",
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

    __slots__ = ("args", "cut", "kwargs", "until")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        until: float | None = None,
        *,
        cut: bool = False,
    ) -> None:
        self.args = args
        self.kwargs = kwargs
        self.until = until
        self.cut = cut


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
class Reserve:
    """Book the next start with the rate limit (or the function's pause); send back the wait."""

    __slots__ = ("args", "kwargs", "pipeline")

    def __init__(self, pipeline: Pipeline, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.args = args
        self.kwargs = kwargs


@final
class Pause:
    """A server asked for ``seconds``: pause the function's rate-limit scope (or the function)."""

    __slots__ = ("pipeline", "seconds")

    def __init__(self, pipeline: Pipeline, seconds: float) -> None:
        self.pipeline = pipeline
        self.seconds = seconds


@final
class Check:
    """Ask ``retry_if_result`` about ``value`` (awaited if it is async); send back its verdict."""

    __slots__ = ("predicate", "value")

    def __init__(self, predicate: Callable[[Any], Any], value: Any) -> None:
        self.predicate = predicate
        self.value = value


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


Step = Call | Wait | Reserve | Pause | Check | Fire | End
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
