"""The map loop: reads items a chunk at a time, hands out one outcome per item.

A bounded number of chunks is in flight, so memory stays flat however long
the input is, and ``imap`` can consume an endless iterator.  ``iterate`` picks
the map's submitter (threads, local processes or Dask), ``MapRun``
(``map_run.py``) sends the chunks and collects them, and ``Collector`` puts the
outcomes in order and keeps the progress meter.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

from opero.concurrency.collect import Collector
from opero.concurrency.map_run import MapCancelledError, MapRun
from opero.concurrency.plan import MapPlan

if TYPE_CHECKING:
    from opero.concurrency.chunks import Batch
    from opero.concurrency.submit import Submitter

__all__ = ["iterate", "map_all"]


def map_all(
    plan: MapPlan,
    items: Iterable[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    ordered: bool,
) -> list[Any]:
    """``f(items)``: one entry per item, result or exception, as one list.

    A list in thread mode takes the fast path (``thread_list.py``); every
    other map runs the general loop.
    """
    from opero.concurrency import thread_list  # noqa: PLC0415 - with the first map

    if thread_list.serves(items, plan, ordered=ordered):
        return thread_list.map_list(plan, items, args, kwargs)
    results: list[Any] = []
    for batch in iterate(plan, items, args, kwargs, ordered=ordered, eager=True):
        results.extend(batch)
    return results


def iterate(
    plan: MapPlan,
    items: Iterable[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    ordered: bool,
    cancel: threading.Event | None = None,
    eager: bool = False,
) -> Generator[list[Any], None, None]:
    """Batches of results (or exceptions) for ``items``, in input order or as they complete.

    ``cancel``, set from another thread, stops the map (workers killed) within 0.1 s.
    ``eager``: the caller keeps every result anyway, so reading further ahead costs
    no memory that the results would not, and keeps the workers' queues full.
    """
    ready: deque[Batch] = deque()
    submitter = _submitter(plan, args, kwargs, ready)
    workers = submitter.workers
    collector = Collector(plan.progress, items, ordered=ordered)
    parent = None
    if plan.remote:
        from opero.concurrency.parent import ParentSide  # noqa: PLC0415 - remote modes only

        parent = ParentSide(plan, args, kwargs)
    run = MapRun(
        submitter,
        ready,
        size=plan.chunk_size_for(items, workers),
        limit=_in_flight_limit(plan, submitter, eager=eager),
        timeout=plan.timeout,
        parent=parent,
        backlog=collector.waiting,  # behind a slow early item, stop reading ahead
        cancel=cancel,
        # Unordered, the completion order is the answer: each chunk is taken as it ends.
        patient=eager and ordered and collector.meter is None,
    )
    try:
        for batch in run.batches(items):
            ready_now = collector.add(batch)
            if ready_now:
                yield ready_now
    except (KeyboardInterrupt, MapCancelledError):
        run.stop(interrupted=True)
        raise
    finally:
        run.stop(interrupted=False)
        collector.close()


def _submitter(
    plan: MapPlan, args: tuple[Any, ...], kwargs: dict[str, Any], ready: deque[Batch]
) -> Submitter:
    """Where this map's chunks run; each backend's module loads with its first map."""
    if not plan.remote:
        from opero.concurrency.submit_threads import ThreadSubmitter  # noqa: PLC0415

        return ThreadSubmitter(plan, args, kwargs, plan.workers)
    from opero.concurrency.shipping import Shipment  # noqa: PLC0415

    shipment = Shipment(plan, args, kwargs, ready.append)
    if plan.mode == "dask":
        from opero.concurrency.submit_dask import DaskSubmitter  # noqa: PLC0415

        return DaskSubmitter(plan, shipment)
    from opero.concurrency.submit_processes import ProcessSubmitter  # noqa: PLC0415

    return ProcessSubmitter(plan, shipment, plan.workers)


def _in_flight_limit(plan: MapPlan, submitter: Submitter, *, eager: bool) -> int:
    """The most chunks in flight at once."""
    workers = submitter.workers
    if submitter.limit is not None:
        return submitter.limit
    if plan.remote and plan.should_process is not None:
        return workers  # asked before each item is sent: send no more than can start
    if eager and plan.timeout is None:
        return workers * 4
    return workers if plan.timeout is not None else workers * 2
