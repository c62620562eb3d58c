"""The cache of a process or Dask map, kept where the map runs (CONTRACT 22).

Items are looked up before they are sent and stored when their results come
back, so a hit never crosses a process boundary.  Within one map an item whose
key is already being computed waits for that item, its *leader*, and shares
its outcome: the same single-flight ``@opero`` gives concurrent callers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opero.core.sentinels import MISSING, NO_KEY

if TYPE_CHECKING:
    from opero.concurrency.chunks import Batch, Chunk
    from opero.concurrency.plan import MapPlan
    from opero.core.cache import CacheLayer

__all__ = ["ParentCache"]


class ParentCache:
    """One map's view of its cache: lookups, stores and the duplicates waiting on leaders."""

    __slots__ = ("args", "cache", "followers", "key_of", "kwargs", "leader_of", "plan")

    def __init__(
        self, plan: MapPlan, cache: CacheLayer, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.plan = plan
        self.cache = cache
        self.args = args
        self.kwargs = kwargs
        #: Key -> index of the item computing it, and back; index -> items waiting for it.
        self.leader_of: dict[Any, int] = {}
        self.key_of: dict[int, Any] = {}
        self.followers: dict[int, list[int]] = {}

    def lookup(self, chunk: Chunk) -> tuple[Batch | None, Chunk]:
        """The chunk's hits as a batch (or None), and the items still to compute."""
        cache, hit_indices, hit_values = self.cache, [], []
        miss_indices, miss_items = [], []
        on_hit = self.plan.on_cache_hit
        for index, item in zip(*chunk, strict=True):
            key = cache.key((item, *self.args), self.kwargs)
            value = cache.get(key)  # NO_KEY reads as MISSING
            if value is not MISSING:
                hit_indices.append(index)
                hit_values.append(value)
                if on_hit is not None:
                    on_hit.fire()
                continue
            flight = cache.hashable(key)
            if flight is not NO_KEY:
                leader = self.leader_of.get(flight)
                if leader is not None:  # already being computed in this map
                    self.followers.setdefault(leader, []).append(index)
                    continue
                self.leader_of[flight] = index
                self.key_of[index] = flight
            miss_indices.append(index)
            miss_items.append(item)
        if not hit_indices:
            return None, (miss_indices, miss_items)
        self.plan.pipeline.counters.add_cache_hits(len(hit_indices))
        return (hit_indices, hit_values, []), (miss_indices, miss_items)

    def store(self, items: list[Any], values: list[Any], failed: list[int]) -> None:
        """Store the successful results of a chunk that came back (exceptions never)."""
        cache, bad = self.cache, set(failed)
        stored = 0
        for position, (item, value) in enumerate(zip(items, values, strict=True)):
            if position in bad:
                continue
            key = cache.key((item, *self.args), self.kwargs)
            if key is not NO_KEY:
                stored += 1
                cache.set(cache.hashable(key), value)
        self.plan.pipeline.counters.add_cache_misses(stored)

    def shared(self, batch: Batch) -> Iterator[Batch]:
        """What the items waiting for this batch's items get: the same value or error.

        Exceptions are shared, as ``@opero``'s single-flight shares them, though
        never cached.
        """
        if not self.key_of:
            return
        indices, values, failed = batch
        bad = set(failed)
        for position, index in enumerate(indices):
            key = self.key_of.pop(index, MISSING)
            if key is MISSING:
                continue
            del self.leader_of[key]
            waiting = self.followers.pop(index, None)
            if waiting:
                self.plan.pipeline.counters.add_cache_hits(len(waiting))
                if self.plan.on_cache_hit is not None:
                    for _ in waiting:
                        self.plan.on_cache_hit.fire()
                shared = list(range(len(waiting))) if position in bad else []
                yield (waiting, [values[position]] * len(waiting), shared)
