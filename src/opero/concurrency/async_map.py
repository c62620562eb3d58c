"""``mode="async"``: items as tasks on the caller's event loop, at most ``workers`` at once.

Tasks are started as earlier ones finish, so a long (or endless) input never
becomes a million pending tasks.  Leaving the loop early, or being cancelled,
cancels the tasks still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from opero.concurrency.dispatch import Collector, MapPlan
from opero.concurrency.pool import NOT_STARTED, Outcome
from opero.exceptions import CancelledItemError

__all__ = ["async_iterate"]


async def async_iterate(
    plan: MapPlan,
    items: Iterable[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    ordered: bool,
) -> AsyncIterator[Any]:
    """Results (or exceptions) for ``items``, in input order or as they complete."""
    call, timeout, should_process = plan.thread_call, plan.timeout, plan.should_process

    async def one(index: int, item: Any) -> Outcome:
        try:
            work = call(item, *args, **kwargs)
            value = await (asyncio.wait_for(work, timeout) if timeout is not None else work)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return (index, False, TimeoutError(f"item did not finish within {timeout} s"))
        except Exception as exc:
            return (index, False, exc)
        return (index, True, value)

    source = enumerate(items)
    collector = Collector(plan.progress, items, ordered=ordered)
    pending: set[asyncio.Task[Outcome]] = set()
    stopped = False
    try:
        while True:
            ready: list[Outcome] = []
            while len(pending) < plan.workers and (entry := next(source, None)) is not None:
                stopped = stopped or (should_process is not None and not should_process())
                if stopped:
                    ready.append((entry[0], False, CancelledItemError(NOT_STARTED)))
                else:
                    pending.add(asyncio.ensure_future(one(*entry)))
            if pending and not ready:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                ready.extend(task.result() for task in done)
            if not ready and not pending:
                return
            for outcome in ready:
                for value in collector.add(outcome):
                    yield value
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        collector.close()
