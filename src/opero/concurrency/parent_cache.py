"""The cache of a process or Dask map, kept where the map runs (CONTRACT 22).

Items are looked up before they are sent and stored when their results come
back, so a hit never crosses a process boundary.  Both go through the cache
layer's own batch API (``lookup_many``, ``store_many``), so every read and
write keeps the layer's contract (failures counted, never raised).  Within one
map an item whose key is already being computed follows that item, its
*leader*, and shares its outcome: the single-flight bookkeeping of ``@opero``
(``opero.core.single_flight.FlightTable``), followed a batch at a time instead
of waited on.  The table is the map's own: a map's leaders are landed by the
map itself, so nothing outside it can be left waiting on a map that was
abandoned.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from opero.core.sentinels import MISSING, NO_KEY
from opero.core.single_flight import FlightTable

if TYPE_CHECKING:
    from opero.concurrency.chunks import Batch, Chunk
    from opero.concurrency.plan import MapPlan
    from opero.core.cache import CacheLayer
    from opero.core.single_flight import Flight

__all__ = ["ParentCache"]


class ParentCache:
    """One map's view of its cache: batch lookups and stores, and the items following leaders."""

    __slots__ = ("args", "cache", "flights", "kwargs", "leading", "plan")

    def __init__(
        self, plan: MapPlan, cache: CacheLayer, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.plan = plan
        self.cache = cache
        self.args = args
        self.kwargs = kwargs
        self.flights = FlightTable()
        #: Index of an item sent as its key's leader -> (that key, its flight).
        self.leading: dict[int, tuple[Hashable, Flight]] = {}

    def _keys(self, items: list[Any]) -> list[Hashable]:
        key, args, kwargs = self.cache.key, self.args, self.kwargs
        return [key((item, *args), kwargs) for item in items]

    def lookup(self, chunk: Chunk) -> tuple[Batch | None, Chunk]:
        """The chunk's hits as a batch (or None), and the items still to compute."""
        cache, hit_indices, hit_values = self.cache, [], []
        miss_indices, miss_items = [], []
        keys = self._keys(chunk[1])
        for index, item, key, value in zip(*chunk, keys, cache.lookup_many(keys), strict=True):
            if value is not MISSING:
                hit_indices.append(index)
                hit_values.append(value)
                continue
            flight_key = cache.hashable(key)
            if flight_key is not NO_KEY:
                leads, flight = self.flights.join(flight_key)
                if not leads:  # already being computed in this map
                    flight.followers.append(index)
                    continue
                self.leading[index] = (flight_key, flight)
            miss_indices.append(index)
            miss_items.append(item)
        if not hit_indices:
            return None, (miss_indices, miss_items)
        self._hits(len(hit_indices))
        return (hit_indices, hit_values, []), (miss_indices, miss_items)

    def _hits(self, count: int) -> None:
        self.plan.pipeline.counters.add_cache_hits(count)
        on_hit = self.plan.on_cache_hit
        if on_hit is not None:
            for _ in range(count):
                on_hit.fire()

    def store(self, items: list[Any], values: list[Any], failed: list[int]) -> None:
        """Store the successful results of a chunk that came back (exceptions never)."""
        bad = set(failed)
        pairs = [
            (key, value)
            for position, (key, value) in enumerate(zip(self._keys(items), values, strict=True))
            if position not in bad
        ]
        self.plan.pipeline.counters.add_cache_misses(self.cache.store_many(pairs))

    def shared(self, batch: Batch) -> Iterator[Batch]:
        """What the items following this batch's items get: the same value or error.

        Exceptions are shared, as ``@opero``'s single-flight shares them, though
        never cached.
        """
        if not self.leading:
            return
        indices, values, failed = batch
        bad = set(failed)
        for position, index in enumerate(indices):
            led = self.leading.pop(index, None)
            if led is None:
                continue
            error = position in bad
            value = values[position]
            flight = self.flights.land(*led, None if error else value, value if error else None)
            waiting = flight.followers
            if waiting:
                self._hits(len(waiting))
                shared = list(range(len(waiting))) if error else []
                yield (waiting, [value] * len(waiting), shared)
