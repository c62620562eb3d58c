"""The threads that sync attempts with a timeout run on.

A thread cannot be stopped from outside, so an attempt that outlives its timeout
keeps its thread until it returns by itself.  That rules out a
``ThreadPoolExecutor``: its threads are joined at interpreter exit, so one attempt
stuck on a dead socket would hang the exit, and its fixed size would make fresh
attempts queue behind abandoned ones (their timeout running while they wait).
Here every thread is a daemon (the interpreter exits without waiting for an
abandoned attempt), a job never waits for a thread (a new one starts when none is
idle), and an idle thread ends after `IDLE_SECONDS`, so a burst leaves nothing
behind.  How many abandoned attempts may run at once is the business of each
function's [`TimeoutRunner`][opero.core.timeouts.TimeoutRunner], not of this pool.

Each attempt is a `ThreadAttempt`: its end, its outcome, and whether the caller still
waits for it.  A forked child has none of its parent's threads: the at-fork hook forgets the idle
ones, so the child starts threads of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final, Protocol, final

from opero.core import forksafe
from opero.core.deadline import attempt_bound

__all__ = ["IDLE_SECONDS", "AbandonedCount", "ThreadAttempt", "run_on_a_thread", "sleep_end"]

#: How long an idle thread waits for its next attempt before it ends.
IDLE_SECONDS: Final = 10.0

Job = Callable[[], object]


@final
class _Threads:
    """Idle daemon threads waiting on one queue; a new one when none is idle."""

    __slots__ = ("__weakref__", "_idle", "_jobs", "_lock")

    def __init__(self) -> None:
        self._lock = forksafe.lock()
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        #: Threads waiting on ``_jobs`` and not yet promised a job.
        self._idle = 0
        forksafe.on_fork(self, _Threads._forget_parent_threads)

    def submit(self, job: Job) -> None:
        """Run ``job`` on an idle thread, or on a new one; never waits."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)
                return
        threading.Thread(target=self._serve, args=(job,), name="opero-attempt", daemon=True).start()

    def _serve(self, job: Job | None) -> None:
        while job is not None:
            job()  # never raises: the attempt keeps its own outcome
            job = None  # an idle thread holds no reference to the last attempt
            with self._lock:
                self._idle += 1
            job = self._next()

    def _next(self) -> Job | None:
        jobs = self._jobs
        while True:
            try:
                return jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # A job put after the timeout but before the lock was promised to
                    # an idle thread: this one may be it, so it looks again.
                    if jobs.empty():
                        self._idle -= 1
                        return None

    def _forget_parent_threads(self) -> None:
        self._jobs = queue.SimpleQueue()
        self._idle = 0


_threads = _Threads()

#: Run a job (a callable taking nothing, which never raises) on a daemon thread.
run_on_a_thread: Final = _threads.submit


class AbandonedCount(Protocol):
    """What a `ThreadAttempt` tells its function's runner (``TimeoutRunner``)."""

    def _hold(self) -> bool:
        """One more abandoned attempt runs; True if that reaches the bound."""

    def _release(self) -> None:
        """An abandoned attempt has ended."""

    def _warn(self) -> None:
        """Say (once) that the bound was reached."""


@final
class ThreadAttempt:
    """One sync attempt on its worker thread: its end, its outcome, whether abandoned.

    ``counts`` (the function's ``TimeoutRunner``) counts it while it runs abandoned.
    """

    __slots__ = ("_lock", "_runner", "abandoned", "done", "error", "finished", "until", "value")

    def __init__(self, counts: AbandonedCount, until: float) -> None:
        self._runner = counts
        self._lock = threading.Lock()
        self.until = until
        self.done = threading.Event()
        self.finished = self.abandoned = False
        self.value: Any = None
        self.error: BaseException | None = None

    def run(
        self, fn: Callable[..., object], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """On the worker thread, inside a copy of the caller's context: call, keep the outcome."""
        _worker_attempt.set(self)
        try:
            with attempt_bound(self.until):
                value = fn(*args, **kwargs)
        except BaseException as error:
            self._finish(None, error)
        else:
            self._finish(value, None)

    def _finish(self, value: object, error: BaseException | None) -> None:
        with self._lock:
            self.finished = True
            if self.abandoned:  # the caller has gone: the outcome is dropped
                self._runner._release()
                return
            self.value, self.error = value, error
        self.done.set()

    def abandon(self) -> None:
        """The caller stops waiting (idempotent; nothing happens once the attempt ended)."""
        with self._lock:
            if self.finished or self.abandoned:
                return
            self.abandoned = True
            reached = self._runner._hold()
        self.done.set()
        if reached:
            self._runner._warn()

    def outcome(self) -> Any:
        """The value of an attempt that ended in time; its error raised."""
        error, self.error = self.error, None
        if error is not None:
            raise error
        return self.value


#: The sync attempt this thread runs, so a virtual clock's sleep stops at its end.
_worker_attempt: ContextVar[ThreadAttempt | None] = ContextVar("opero_worker_attempt", default=None)


def sleep_end(now: float, target: float) -> float:
    """Where a virtual clock's sleep from ``now`` until ``target`` ends in this context.

    ``target``, except in a sync attempt run by `TimeoutRunner`: it stops at the
    attempt's end (where the caller stops waiting), and an abandoned attempt's sleeps
    move time no further.  Real time would go on for the abandoned thread, but virtual
    time is shared, and the caller's retries must see the clock at the cut.
    """
    attempt = _worker_attempt.get()
    if attempt is None:
        return target
    if attempt.abandoned:
        return now
    return max(now, min(target, attempt.until))
