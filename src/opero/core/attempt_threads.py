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

A forked child has none of its parent's threads: the at-fork hook forgets the idle
ones, so the child starts threads of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Final, final

from opero.core import forksafe

__all__ = ["IDLE_SECONDS", "run_on_a_thread"]

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
