"""What the parent does for items that run in other processes (CONTRACT 22).

The outer layers of the per-item pipeline stay where the map runs: the parent
asks ``should_process`` before it sends an item, answers hits from the cache
(``parent_cache.py``) and counts the calls, so a hit never crosses a process
boundary, and spaces the items by the rate limit.  The workers run the rest
(retries and fallbacks), booking each further start with the parent's limiter
(``scope_link.py``), so one rate holds across all workers, retries included.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opero.concurrency.parent_cache import ParentCache
from opero.core import clock

if TYPE_CHECKING:
    from opero.concurrency.chunks import Batch, Chunk
    from opero.concurrency.plan import MapPlan

__all__ = ["ParentSide"]


class ParentSide:
    """One remote map's outer layers, applied a chunk at a time before it is sent."""

    __slots__ = ("args", "cache", "kwargs", "plan")

    def __init__(self, plan: MapPlan, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.plan = plan
        self.args = args
        self.kwargs = kwargs
        #: Lookups, stores, and the duplicates waiting on their leaders (None: no cache).
        cache = plan.cache
        self.cache = ParentCache(plan, cache, args, kwargs) if cache is not None else None

    def may_start(self) -> bool:
        """``should_process`` says the next item may go (asked before each one is sent)."""
        should_process = self.plan.should_process
        return should_process is None or bool(should_process())

    def admit(self, chunk: Chunk) -> tuple[Batch | None, Chunk]:
        """The chunk's cache hits as a batch (or None), and the items to send, counted and spaced.

        Counted here once: resubmissions after a death or a timeout are not calls.
        Each item's first start is booked here, before it is sent (so a waiting item
        holds no worker); its retries are booked by the worker, with this process's
        limiter too (``scope_link.py``).
        """
        hits = None
        if self.cache is not None:
            hits, chunk = self.cache.lookup(chunk)
            if not chunk[0]:
                return hits, chunk
        plan = self.plan
        plan.pipeline.counters.add_entries(len(chunk[0]))
        if plan.limiter is not None:  # chunks of one item: one start time per item
            delay = plan.pipeline.rate_delay((chunk[1][0], *self.args), self.kwargs)
            if delay > 0:
                clock.sleep(delay)
        return hits, chunk

    def settle(self, items: list[Any], values: list[Any], failed: list[int]) -> None:
        """A chunk came back: store its successful results."""
        if self.cache is not None:
            self.cache.store(items, values, failed)

    def shared(self, batch: Batch) -> Iterator[Batch]:
        """What the duplicates waiting for this batch's items get (see `ParentCache.shared`)."""
        if self.cache is not None:
            yield from self.cache.shared(batch)
