"""Running one attempt within a time limit: cut (async) or abandoned (sync).

An async attempt is cancelled at its timeout, and the ``CancelledError`` it ends with
becomes a ``TimeoutError``, the attempt's error, routed like any other.  A cancellation
from outside stays a ``CancelledError``: the cut converts only its own, counted with
``Task.cancelling()`` from Python 3.11 on, as ``asyncio.timeout`` does (on 3.10 a
cancel that lands at the very moment of the cut is taken as the cut's).  The attempt runs
in the caller's task (no task is created), and the timer, one ``loop.call_later``
handle, is armed only once the attempt suspends, so an attempt that returns at once
costs well under a microsecond more than a plain ``await`` (``bench/timeouts.py``).

Sync attempts are in [`opero.core.sync_timeouts`][opero.core.sync_timeouts] (run on
a worker thread and abandoned at the timeout); `call_within` and `TimeoutRunner` are
re-exported here so the engine imports both kinds from one place.

On a clock with virtual timers (`FakeClock`) the cut happens at the timeout in
virtual time, as a sleep on that clock passes it, even while the attempt itself
sleeps on the fake clock.  An attempt blocked for real (a socket) is cut after the
timeout in real seconds too, and virtual time then reads the attempt's end.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar, final

from opero.core import clock as _clock
from opero.core.deadline import _attempt_end
from opero.core.sync_timeouts import (
    DEFAULT_BOUND,
    TimeoutRunner,
    call_within,
    runner_for,
    sleep_end,
    timed_out,
    virtual_timers,
)

__all__ = [
    "DEFAULT_BOUND",
    "TimeoutRunner",
    "acall_within",
    "call_within",
    "runner_for",
    "sleep_end",
]

T = TypeVar("T")


@final
class _Cut:
    """Cancels the attempt's task at the timeout and tells its own cancellation apart."""

    __slots__ = ("_cancelling", "_loop", "_settled", "_task", "fired")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self._loop = loop
        self._task = task
        self._cancelling: int = task.cancelling() if _COUNTS_CANCELS else 0  # type: ignore[attr-defined]
        self.fired = self._settled = False

    def __call__(self) -> None:
        if not self.fired:
            self.fired = True
            self._task.cancel()

    def from_any_thread(self) -> None:
        """The virtual timer's callback: a clock may be moved from another thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self()
        else:
            self._loop.call_soon_threadsafe(self)

    def settle(self) -> bool:
        """Once fired: take back this cut's cancel; True if no other cancel is pending."""
        if self._settled:
            return False
        self._settled = True
        if not _COUNTS_CANCELS:  # Python 3.10: a cancel at the same moment is taken as ours
            return True
        left: int = self._task.uncancel()  # type: ignore[attr-defined]
        return left <= self._cancelling


_COUNTS_CANCELS = hasattr(asyncio.Task, "uncancel")
_CoroutineType = types.CoroutineType


async def acall_within(
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    seconds: float,
) -> T:
    """Await ``fn(*args, **kwargs)``, cancelled after ``seconds`` with a ``TimeoutError``.

    A cancellation from outside propagates as ``CancelledError``.  The attempt sees
    its end through `opero.remaining()`.  ``seconds <= 0`` starts nothing.

    The timer is armed only if the attempt suspends: its first step runs here, and an
    attempt that returns without waiting (a cache of its own, a fast path) pays for
    no timer at all.  A first step cannot be cut in any case (nothing can interrupt
    code that does not await), so the cut it would have had happens at its first wait.
    """
    if not seconds > 0:
        raise timed_out(seconds)
    until = _clock.now() + seconds
    # enter_bound/leave_bound, inlined: this is the whole cost of an attempt that
    # returns at once.
    outer = _attempt_end.get()
    token = None if outer is not None and outer <= until else _attempt_end.set(until)
    try:
        awaitable = fn(*args, **kwargs)
        steps: Any = awaitable if type(awaitable) is _CoroutineType else awaitable.__await__()
        try:
            pending = steps.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # (no cast(): a call)
        return await _suspended(steps, pending, until, seconds)  # type: ignore[no-any-return]
    finally:
        if token is not None:
            _attempt_end.reset(token)


async def _suspended(steps: Any, pending: Any, until: float, seconds: float) -> Any:
    """The rest of an attempt that suspended: armed with the cut, awaited to its end."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - a coroutine driven by hand, outside any task
        msg = "acall_within must run inside an asyncio task"
        raise RuntimeError(msg)
    cut = _Cut(loop, task)
    timers = virtual_timers()
    if timers is None:
        virtual = None
        real = loop.call_later(until - _clock.now(), cut)
    else:  # cut in virtual time, or after the timeout in real time if blocked for real
        virtual = timers(until, cut.from_any_thread)
        real = loop.call_later(seconds, virtual.fire)
    try:
        return await _resume(steps, pending)
    except asyncio.CancelledError as error:
        if cut.fired and cut.settle():
            raise timed_out(seconds) from error
        raise
    finally:
        real.cancel()
        if virtual is not None:
            virtual.cancel()
        if cut.fired:
            cut.settle()  # the attempt swallowed the cancel: the task's count stays right


@types.coroutine
def _resume(steps: Any, pending: Any) -> Generator[Any, Any, Any]:
    """Go on awaiting ``steps``, already started and now waiting on ``pending``.

    The same as the ``await`` it replaces: what the task sends or throws in (its cancel)
    is passed on, and what the attempt yields goes out to the task.
    """
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as thrown:
            try:
                pending = steps.throw(thrown)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            pending = steps.send(sent)
        except StopIteration as stop:
            return stop.value
