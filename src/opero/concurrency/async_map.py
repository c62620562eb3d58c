"""``mode="async"``: items as tasks on the caller's event loop, at most ``workers`` at once.

Tasks are started as earlier ones finish, so a long (or endless) input never
becomes a million pending tasks.  Leaving the loop early, or being cancelled,
cancels the tasks still running.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from opero.concurrency.chunks import NOT_STARTED
from opero.concurrency.collect import Collector
from opero.concurrency.plan import MapPlan
from opero.core.correlation import correlation_id
from opero.core.deadline import backstop_grace
from opero.exceptions import CancelledItemError, DeadlineExceeded

__all__ = ["async_iterate"]

#: Items reported as cancelled per step once should_process has said stop.
_CANCELLED_BATCH = 256


async def async_iterate(
    plan: MapPlan,
    items: Iterable[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    ordered: bool,
) -> AsyncIterator[list[Any]]:
    """Batches of results (or exceptions) for ``items``, in input order or as they complete."""
    call, timeout, should_process = _call_of(plan), plan.timeout, plan.should_process
    loop = asyncio.get_running_loop()
    index_of: dict[asyncio.Future[Any], int] = {}
    finished: deque[tuple[int, asyncio.Future[Any]]] = deque()
    wake = asyncio.Event()

    def done(task: asyncio.Future[Any]) -> None:
        finished.append((index_of.pop(task), task))
        wake.set()

    source = enumerate(items)
    collector = Collector(plan.progress, items, ordered=ordered)
    # Behind a slow early item, stop starting new ones once this many results wait.
    backlog_limit = plan.workers * 4
    stopped = False
    try:
        while True:
            indices: list[int] = []
            values: list[Any] = []
            failed: list[int] = []
            while (
                len(index_of) < plan.workers
                and collector.waiting() < backlog_limit
                and len(values) < _CANCELLED_BATCH
                and (entry := next(source, None)) is not None
            ):
                stopped = stopped or (should_process is not None and not should_process())
                if stopped:  # reported a batch at a time, so an endless input stays lazy
                    failed.append(len(values))
                    indices.append(entry[0])
                    values.append(CancelledItemError(NOT_STARTED))
                    continue
                task = loop.create_task(call(entry[1], *args, **kwargs))
                index_of[task] = entry[0]
                task.add_done_callback(done)
            if not finished and not values:
                if not index_of:
                    return
                wake.clear()
                await wake.wait()
            while finished:
                index, future = finished.popleft()
                error = future.exception()
                if error is not None:
                    error = _late(error, timeout)
                    failed.append(len(values))
                indices.append(index)
                values.append(future.result() if error is None else error)
            batch = _ascending(indices, values, failed) if ordered else (indices, values, failed)
            ready = collector.add(batch) if values else []
            if ready:
                yield ready
    finally:
        for running in index_of:
            running.cancel()
        if index_of:
            await asyncio.gather(*index_of, return_exceptions=True)
        collector.close()


def _late(error: BaseException, timeout: float | None) -> BaseException:
    """An item's entry for ``error``: the map's own cut (wait_for's TimeoutError) is the
    item's DeadlineExceeded; the item's engine ending at that deadline already is one."""
    if (
        timeout is not None
        and isinstance(error, asyncio.TimeoutError)
        and not isinstance(error, DeadlineExceeded)
    ):
        message = f"item did not finish within {timeout} s"
        return DeadlineExceeded(message, correlation_id=correlation_id())
    return error


def _call_of(plan: MapPlan) -> Callable[..., Any]:
    """The per-item call; with a timeout, behind the map's own cut (the backstop)."""
    if plan.shell is None:  # pragma: no cover - async mode always has one
        msg = "an async map needs its per-item call"
        raise TypeError(msg)
    call, timeout = plan.shell.call, plan.timeout
    if not timeout:
        return call
    patience = timeout + backstop_grace(timeout)  # the item's engine cuts it at its deadline

    def cut(*args: Any, **kwargs: Any) -> Any:
        return asyncio.wait_for(call(*args, **kwargs), patience)

    return cut


def _ascending(
    indices: list[int], values: list[Any], failed: list[int]
) -> tuple[list[int], list[Any], list[int]]:
    """The batch in input order: tasks finish in any order, the Collector needs ascending runs."""
    if len(indices) < 2:
        return indices, values, failed
    bad = set(failed)
    order = sorted(range(len(indices)), key=indices.__getitem__)
    return (
        [indices[i] for i in order],
        [values[i] for i in order],
        [position for position, i in enumerate(order) if i in bad],
    )
