"""``MapPlan``: what one mapped function's map loop needs, fixed at decoration time.

Its own module, below every part of the map engine, so that the loop
(``dispatch.py``), the run (``map_run.py``), the submitters and the parent-side
cache all read it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, final

from opero.core.frozen import Frozen

if TYPE_CHECKING:
    from opero.concurrency.map_link import MapLink
    from opero.concurrency.progress import Progress
    from opero.concurrency.worker import WorkerSpec
    from opero.core.cache import CacheLayer
    from opero.core.callbacks import Callback
    from opero.core.pipeline import Pipeline
    from opero.core.rate_limit import RateLimit
    from opero.core.shell import Shell

__all__ = ["MapPlan"]

#: Modes whose items run in other processes: the parent keeps the cache and the rate limit.
REMOTE_MODES = frozenset({"process", "async_process", "dask"})


@final
class MapPlan(Frozen):
    """Everything the loop needs about one mapped function, fixed at decoration time."""

    __slots__ = (
        "cache",
        "chunk_size",
        "client",
        "limiter",
        "link",
        "mode",
        "on_cache_hit",
        "pipeline",
        "progress",
        "retries",
        "settings",
        "shell",
        "should_process",
        "spec",
        "start_method",
        "timeout",
        "workers",
    )

    mode: str
    #: Local pools: their size.  Dask: chunks running at once (0: the cluster's threads).
    workers: int
    #: Dask mode: a ``distributed.Client``, a scheduler address, or None for the default.
    client: object
    chunk_size: int | None
    timeout: float | None
    should_process: Callable[[], object] | None
    #: The bar's label and whether a summary line is wanted; None: progress=False.
    progress: Progress | None
    start_method: str
    #: Process modes: how often an item may take its worker down before it is charged.
    retries: int
    #: Process modes: the parent-side cache and limiter (thread/async modes: None).
    cache: CacheLayer | None
    limiter: RateLimit | None
    #: The parent's pipeline: statistics, cache hits, rate-limit waits.
    pipeline: Pipeline
    on_cache_hit: Callback | None
    #: Process modes: the function and its worker settings, as cloudpickle bytes.
    spec: WorkerSpec | None
    #: Process modes: how the workers reach the parent's limiter or pause (``map_link.py``).
    link: MapLink | None
    #: Thread and async modes: the per-item @opero calls (the whole call, and its fast path).
    shell: Shell | None
    #: The map's own settings as it runs them (mode, workers, ordered, ...), for introspection.
    settings: Mapping[str, Any]

    def __init__(
        self,
        *,
        mode: str,
        workers: int,
        client: object,
        chunk_size: int | None,
        timeout: float | None,
        should_process: Callable[[], object] | None,
        progress: Progress | None,
        start_method: str,
        retries: int,
        cache: CacheLayer | None,
        limiter: RateLimit | None,
        pipeline: Pipeline,
        on_cache_hit: Callback | None,
        spec: WorkerSpec | None,
        shell: Shell | None,
        settings: Mapping[str, Any],
        link: MapLink | None = None,
    ) -> None:
        self._init(
            mode=mode,
            workers=workers,
            client=client,
            chunk_size=chunk_size,
            timeout=timeout,
            should_process=should_process,
            progress=progress,
            start_method=start_method,
            retries=retries,
            cache=cache,
            limiter=limiter,
            pipeline=pipeline,
            on_cache_hit=on_cache_hit,
            spec=spec,
            shell=shell,
            settings=settings,
            link=link,
        )

    @property
    def remote(self) -> bool:
        """Items run in other processes: the parent asks, looks up, limits and counts them."""
        return self.mode in REMOTE_MODES

    def __repr__(self) -> str:
        # The function, its settings and the client stay out: a repr may reach a log.
        return f"MapPlan(mode={self.mode!r}, workers={self.workers})"

    # One plan per decorated function: compared and hashed by identity (its settings
    # hold callables and mappings, and a map's own pool is keyed by the plan's id).
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def chunk_size_for(self, items: Iterable[Any], workers: int) -> int:
        """Items per chunk for ``items`` on ``workers`` workers."""
        if self.timeout is not None or self.limiter is not None:
            return 1  # per-item deadlines and per-item start times
        if self.should_process is not None and self.remote:
            return 1  # the parent asks should_process before each item it sends
        if self.chunk_size:
            return int(self.chunk_size)
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            return 256 if self.remote else 64
        # About four chunks per worker: enough to balance uneven items, few enough to be cheap.
        return max(1, min(4096, -(-total // (workers * 4))))
