"""The map loop: reads items a chunk at a time, hands out one outcome per item.

A bounded number of chunks is in flight, so memory stays flat however long
the input is, and ``imap`` can consume an endless iterator.  ``MapRun``
(``map_run.py``) sends the chunks and collects them; ``Collector`` puts the
outcomes in order and keeps the progress bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

from opero.concurrency.collect import Collector
from opero.concurrency.map_run import MapCancelledError, MapRun
from opero.concurrency.progress import Progress

__all__ = ["MapPlan", "iterate"]


class MapPlan:
    """Everything the loop needs about one mapped function, fixed at decoration time."""

    __slots__ = (
        "cache",
        "chunk_size",
        "client",
        "limiter",
        "mode",
        "on_cache_hit",
        "pipeline",
        "progress",
        "retries",
        "settings",
        "should_process",
        "spec",
        "start_method",
        "thread_call",
        "timeout",
        "workers",
    )

    mode: str
    #: Local pools: their size.  Dask: chunks running at once (0: the cluster's threads).
    workers: int
    #: Dask mode: a ``distributed.Client``, a scheduler address, or None for the default.
    client: Any
    chunk_size: int | None
    timeout: float | None
    should_process: Callable[[], Any] | None
    #: The bar's label and whether a summary line is wanted; None: progress=False.
    progress: Progress | None
    start_method: str
    retries: int
    #: Process modes: the parent-side cache and limiter (thread/async modes: None).
    cache: Any
    limiter: Any
    #: The parent's pipeline: statistics, cache hits, rate-limit waits.
    pipeline: Any
    on_cache_hit: Any
    #: Process modes: the function and its worker settings, as cloudpickle bytes.
    spec: Any
    #: Thread and async modes: the full per-item @opero wrapper.
    thread_call: Any
    #: The map's own settings as it runs them (mode, workers, ordered, ...), for introspection.
    settings: Mapping[str, Any]

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


def _chunk_size(plan: MapPlan, items: Iterable[Any], workers: int) -> int:
    if plan.timeout is not None or plan.limiter is not None:
        return 1  # per-item deadlines and per-item start times
    if plan.should_process is not None and plan.mode != "thread":
        return 1  # the parent asks should_process before each item it sends
    if plan.chunk_size:
        return int(plan.chunk_size)
    try:
        total = len(items)  # type: ignore[arg-type]
    except TypeError:
        return 64 if plan.mode == "thread" else 256
    # About four chunks per worker: enough to balance uneven items, few enough to be cheap.
    return max(1, min(4096, -(-total // (workers * 4))))


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
    executor, workers = None, plan.workers
    if plan.mode == "dask":
        from opero.concurrency import cluster  # noqa: PLC0415 - dask mode only

        client = cluster.client_for(plan.client)
        executor = cluster.ClusterTasks(client)
        workers = plan.workers or cluster.slots(client)
    run = MapRun(plan, args, kwargs, _chunk_size(plan, items, workers), workers)
    run.executor = executor
    if executor is not None and plan.workers:
        run.limit = plan.workers  # the cluster queues what it is given: send only what may run
    elif run.process and plan.should_process is not None:
        run.limit = workers  # asked before each item is sent: send no more than can start
    elif eager and plan.timeout is None:
        run.limit = workers * 4
    run.cancel = cancel
    collector = Collector(plan.progress, items, ordered=ordered)
    # Behind a slow early item, stop reading ahead once this many results wait.
    run.backlog_limit = run.limit * run.size
    run.backlog = collector.waiting
    try:
        for batch in run.batches(iter(items)):
            ready = collector.add(batch)
            if ready:
                yield ready
    except (KeyboardInterrupt, MapCancelledError):
        run.stop(interrupted=True)
        raise
    finally:
        run.stop(interrupted=False)
        collector.close()
