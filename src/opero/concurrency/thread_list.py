"""``f(items)`` on a list in thread mode: the whole list through pool threads, in order.

A hand-written fast path beside the general map loop (``dispatch.iterate``),
kept because it measurably serves speed: for 20,000 trivial items the loop's
own bookkeeping (a generator per layer, ``wait`` on every chunk, the
collector's buffer) costs about a tenth of the map, which is what put
``opmap(mode="thread")`` behind ``multiprocessing.pool.ThreadPool.map``.  It
serves only the case where none of that bookkeeping has work to do: the
caller wants one list in input order, the items are already a list or tuple,
and there is no per-item timeout or ``should_process``.  Each chunk still
runs through the same per-item code as every thread map
(``ThreadJob.run`` → ``items.run_sync_chunk``), so every item keeps its own
outcome, its error in its slot, and is counted once.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, TypeGuard

from opero.concurrency.chunks import pool_failure
from opero.concurrency.pool import thread_pool
from opero.concurrency.progress import meter
from opero.concurrency.submit_threads import ThreadJob

if TYPE_CHECKING:
    from concurrent.futures import Future

    from opero.concurrency.plan import MapPlan

__all__ = ["map_list", "serves"]


def serves(
    items: object, plan: MapPlan, *, ordered: bool
) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    """Whether ``map_list`` can run this map: nothing of the general loop would have work."""
    return (
        (type(items) is list or type(items) is tuple)
        and ordered
        and plan.shell is not None
        and not plan.remote
        and plan.timeout is None
        and plan.should_process is None
    )


def map_list(
    plan: MapPlan,
    items: list[Any] | tuple[Any, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> list[Any]:
    """Every item's outcome, in input order: its result, or its exception in its slot.

    At most four chunks per worker are in flight, as in the general loop; the
    next is sent as the oldest comes back.  Interrupted, the map starts no
    further item and cancels the chunks not yet started.
    """
    shell = plan.shell
    if shell is None:  # pragma: no cover - see serves()
        msg = "a thread map needs its per-item call"
        raise TypeError(msg)
    workers, total = plan.workers, len(items)
    size = plan.chunk_size_for(items, workers)
    job = ThreadJob(shell, args, kwargs, None, plan.pipeline.counters, track_start=False)
    pool = thread_pool(workers)
    window: deque[tuple[Future[tuple[list[Any], list[int]]], range]] = deque()
    starts = iter(range(0, total, size))

    def send(start: int) -> None:
        chunk = items[start : start + size]
        if type(chunk) is not list:
            chunk = list(chunk)
        indices = range(start, start + len(chunk))
        window.append((pool.submit(job.run, indices, chunk), indices))

    shown = meter(plan.progress, total)
    results: list[Any] | None = None
    try:
        for _, first in zip(range(workers * 4), starts, strict=False):
            send(first)
        while window:
            future, indices = window.popleft()
            try:
                values, failed = future.result()
            except Exception as exc:  # the pool itself failed the chunk (as in MapRun)
                _, values, failed = pool_failure(indices, exc)
            following = next(starts, None)
            if following is not None:
                send(following)
            if results is None:
                results = values  # the first chunk's own list, not a copy
            else:
                results.extend(values)
            if shown is not None:
                shown.advance(len(values), len(failed))
    except BaseException:
        job.stop.set()
        for future, _ in window:
            future.cancel()
        raise
    finally:
        if shown is not None:
            shown.close()
    return [] if results is None else results
