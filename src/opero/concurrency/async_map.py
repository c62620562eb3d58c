"""``mode="async"``: items as tasks on the caller's event loop, at most ``workers`` at once.

Tasks are started as earlier ones finish, so a long (or endless) input never
becomes a million pending tasks.  Leaving the loop early, or being cancelled,
cancels the tasks still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from opero.concurrency.dispatch import MapPlan, progress_bar
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
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    bar = progress_bar(plan.progress, total)

    async def one(index: int, item: Any) -> tuple[int, bool, Any]:
        try:
            work = call(item, *args, **kwargs)
            value = await (asyncio.wait_for(work, timeout) if timeout is not None else work)
        except asyncio.TimeoutError:
            return (index, False, TimeoutError(f"item did not finish within {timeout} s"))
        except Exception as exc:
            return (index, False, exc)
        return (index, True, value)

    source = enumerate(items)
    pending: set[asyncio.Task[tuple[int, bool, Any]]] = set()
    buffer: dict[int, Any] = {}
    next_index = failures = 0
    stopped = False
    try:
        while True:
            ready: list[tuple[int, bool, Any]] = []
            while len(pending) < plan.workers:
                entry = next(source, None)
                if entry is None:
                    break
                if stopped or (should_process is not None and not should_process()):
                    stopped = True
                    ready.append(
                        (
                            entry[0],
                            False,
                            CancelledItemError("not started: should_process said stop"),
                        )
                    )
                    continue
                pending.add(asyncio.ensure_future(one(*entry)))
            if pending and not ready:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                ready.extend(task.result() for task in done)
            if not ready and not pending:
                return
            for index, ok, value in ready:
                if not ok:
                    failures += 1
                if bar is not None:
                    bar.update(1)
                    if not ok:
                        bar.set_postfix(failed=failures, refresh=False)
                if not ordered:
                    yield value
                    continue
                buffer[index] = value
                while next_index in buffer:
                    yield buffer.pop(next_index)
                    next_index += 1
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if bar is not None:
            bar.close()
