"""The in-process cache: a bounded LRU with per-entry expiry, safe under threads."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, final

from opero.core import clock, forksafe
from opero.core.owned import Owned
from opero.core.sentinels import MISSING

__all__ = ["MISSING", "MemoryBackend"]


@final
class MemoryBackend(Owned):
    """Least-recently-used store of at most ``maxsize`` entries, each expiring after ``ttl``.

    Expired entries are dropped when read or when they reach the LRU end; the
    time comes from :mod:`opero.core.clock` so tests can move it.
    """

    __slots__ = ("_data", "_lock", "_owner", "maxsize", "ttl")

    def __init__(self, maxsize: int | None = None, ttl: float | None = None) -> None:
        #: Most entries kept; ``None`` for no bound.
        self.maxsize = maxsize
        #: Seconds an entry lives; ``None`` for forever.
        self.ttl = ttl
        self._data: OrderedDict[Hashable, tuple[Any, float | None]] = OrderedDict()
        self._lock = forksafe.lock()

    def get(self, key: Hashable) -> Any:
        """The value stored under ``key``, or ``MISSING``.

        Reads take no lock: each ``OrderedDict`` operation is atomic, and an
        entry evicted between two of them is simply still returned once.
        Raises ``TypeError`` for an unhashable key (the cache layer then
        freezes the key and asks again).
        """
        entry = self._data.get(key)
        if entry is None:
            return MISSING
        expires = entry[1]
        if expires is not None and expires <= clock.now():
            with self._lock:
                if self._data.get(key) is entry:
                    del self._data[key]
            return MISSING
        try:  # noqa: SIM105 - contextlib.suppress costs a call on every hit
            self._data.move_to_end(key)
        except KeyError:  # evicted by another thread just now
            pass
        return entry[0]

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value``, evicting the least recently used entry beyond ``maxsize``."""
        expires = clock.now() + self.ttl if self.ttl is not None else None
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            if self.maxsize is not None:
                while len(self._data) > self.maxsize:
                    self._data.popitem(last=False)

    def delete(self, key: Hashable) -> None:
        """Forget ``key`` if present."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._data.clear()

    def size(self) -> int:
        """Entries held, counting expired ones not yet dropped."""
        return len(self._data)
