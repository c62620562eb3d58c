"""``mode="thread"``: chunks run in pool threads, through the full per-item ``@opero`` call.

The shared thread pool of the map's size runs the chunks; a map with a
timeout gets threads of its own, since a thread cannot be stopped from outside
and a timed-out item keeps its thread until it returns.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from opero.concurrency.chunks import Chunk
from opero.concurrency.items import Pace, run_sync_chunk
from opero.concurrency.pool import thread_pool
from opero.core import correlation

if TYPE_CHECKING:
    from opero.concurrency.plan import MapPlan
    from opero.concurrency.submit import Lost
    from opero.core.shell import Shell
    from opero.core.stats import Counters

__all__ = ["ThreadJob", "ThreadSubmitter"]


class ThreadJob:
    """One map's per-item call in pool threads: runs chunks, notes start times for deadlines."""

    __slots__ = (
        "args",
        "correlation",
        "counters",
        "kwargs",
        "pace",
        "shell",
        "should_process",
        "started",
        "stop",
    )

    def __init__(
        self,
        shell: Shell,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        should_process: Callable[[], object] | None,
        counters: Counters,
        *,
        track_start: bool,
    ) -> None:
        self.shell = shell
        self.args = args
        self.kwargs = kwargs
        self.should_process = should_process
        #: Counts, in one step per chunk, the items that took the fast path.
        self.counters = counters
        #: Set to stop starting items (should_process said no, or the map was left).
        self.stop = threading.Event()
        #: When each item began (only with a timeout: deadlines count from the start).
        self.started: dict[int, float] | None = {} if track_start else None
        #: The fast path's slice size, learned by this map's earlier chunks.
        self.pace = Pace()
        #: The caller's correlation id: pool threads do not inherit context variables.
        self.correlation = correlation.correlation_id()

    def run(self, indices: Sequence[int], items: list[Any]) -> tuple[list[Any], list[int]]:
        """Run the chunk's items one after another: ``(values, failed positions)``."""
        started = self.started
        on_start = None if started is None else functools.partial(_note_start, started, indices)
        plain = 0
        carried = correlation.enter(self.correlation)
        try:
            values, failed, plain = run_sync_chunk(
                self.shell,
                items,
                self.args,
                self.kwargs,
                self.stop,
                should_process=self.should_process,
                on_start=on_start,
                pace=self.pace,
            )
        finally:  # the fast path's calls passed no counter: count them here, once
            correlation.leave(carried)
            if plain:
                self.counters.add_entries(plain)
        return values, failed


def _note_start(started: dict[int, float], indices: Sequence[int], position: int) -> None:
    """Deadlines count from an item's start: real time, since items really run."""
    started[indices[position]] = time.monotonic()


class ThreadSubmitter:
    """Sends a thread map's chunks to pool threads (see `Submitter`)."""

    __slots__ = ("job", "limit", "own_threads", "tick", "workers")

    def __init__(
        self, plan: MapPlan, args: tuple[Any, ...], kwargs: dict[str, Any], workers: int
    ) -> None:
        if plan.shell is None:  # pragma: no cover - thread modes always have one
            msg = "a thread map needs its per-item call"
            raise TypeError(msg)
        self.job = ThreadJob(
            plan.shell,
            args,
            kwargs,
            plan.should_process,
            plan.pipeline.counters,
            track_start=plan.timeout is not None,
        )
        self.workers = workers
        self.limit: int | None = None
        self.tick = 0.05 if plan.timeout is not None else None
        #: With a timeout: the map's own threads (see ``expire``).
        self.own_threads: ThreadPoolExecutor | None = None

    def submit(self, chunk: Chunk, *, alone: bool = False) -> tuple[Future[Any], Chunk]:
        if self.tick is None:
            pool = thread_pool(self.workers)
        else:
            if self.own_threads is None:
                self.own_threads = ThreadPoolExecutor(self.workers, "opero-timeout")
            pool = self.own_threads
        return pool.submit(self.job.run, chunk[0], chunk[1]), chunk

    def result(self, future: Future[Any]) -> tuple[list[Any], list[int]]:
        outcome: tuple[list[Any], list[int]] = future.result()
        return outcome

    def broken(self, future: Future[Any], error: Exception) -> Lost | None:
        return None  # no worker to lose: the pool itself failed the chunk

    def expire(
        self, in_flight: Mapping[Future[Any], Chunk], timeout: float
    ) -> tuple[list[Future[Any]], list[Future[Any]]]:
        """Late chunks by their first item's start; the queued ones go to fresh threads.

        Left alone, the items queued behind a stuck one would wait for it, and
        a map whose every thread is stuck would outlive its timeouts.  The old
        threads are left to wind down as their items return.
        """
        started = self.job.started or {}
        now = time.monotonic()  # items really run: deadlines are real time, not opero's clock
        expired = []
        for future, (indices, _) in in_flight.items():
            begun = started.get(indices[0])
            if begun is not None and now - begun >= timeout and not future.done():
                expired.append(future)
        if not expired:
            return [], []
        late = set(expired)
        old, self.own_threads = self.own_threads, None
        queued = [future for future in in_flight if future not in late and future.cancel()]
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        return expired, queued

    def stop(self, in_flight: Iterable[Future[Any]], *, interrupted: bool) -> None:
        self.job.stop.set()
        for future in in_flight:
            future.cancel()
        if self.own_threads is not None:
            self.own_threads.shutdown(wait=False, cancel_futures=True)
            self.own_threads = None
