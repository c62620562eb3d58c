"""What both cache layers offer on top of their own ``get``, ``set`` and ``hashable``: batches.

A process or Dask map looks its items up in the parent before it sends them and
stores their results when they come back (CONTRACT 22), a chunk at a time:
``lookup_many`` and ``store_many`` are that, with the layer's own read and
write contract, so the map has no cache logic of its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from opero.core.owned import Owned
from opero.core.sentinels import NO_KEY

__all__ = ["CacheBase"]


class CacheBase(Owned):
    """The batch half of a cache layer, built on the layer's ``get``, ``set`` and ``hashable``."""

    __slots__ = ()

    def get(self, key: Hashable) -> Any:
        """The value under ``key``, or ``MISSING``; never raises (each layer says more)."""
        raise NotImplementedError

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``; a failure is counted and reported, never raised."""
        raise NotImplementedError

    def hashable(self, key: Hashable) -> Hashable:
        """``key`` as the layer stores it, or ``NO_KEY`` if it has no usable form."""
        raise NotImplementedError

    def lookup_many(self, keys: Sequence[Hashable]) -> list[Any]:
        """Each key's value or ``MISSING``, in order; never raises (``NO_KEY`` reads as a miss)."""
        get = self.get
        return [get(key) for key in keys]

    def store_many(self, pairs: Iterable[tuple[Hashable, Any]]) -> int:
        """Store each ``(key, value)`` whose key is usable; how many were. Never raises."""
        stored = 0
        for key, value in pairs:
            usable = self.hashable(key)
            if usable is not NO_KEY:
                self.set(usable, value)
                stored += 1
        return stored
