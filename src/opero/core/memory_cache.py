"""The in-memory cache layer of one decorated function: keys, an LRU store, failures.

A method's ``self`` is held weakly here (when its type allows weak
references): an instance that is gone can no longer match, and its entries are
dropped at the next store, so caching a method does not keep instances alive.
``weakref.ref(obj)`` hashes and compares as ``obj``, so equal instances share
entries as before.  Instances without weak-reference support (``__slots__``
without ``__weakref__``) are held, as ``functools.cache`` and cachetools hold
them; ``cache_ignore=("self",)`` or ``cache_maxsize`` bound what they keep.
A value that refers back to its instance keeps it alive all the same.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Hashable
from typing import Any, final

from opero.core.backends.memory import MemoryBackend
from opero.core.cache_base import CacheBase
from opero.core.key_report import KeyReport
from opero.core.keys import KeyFunction, Keys, freeze
from opero.core.sentinels import MISSING, NO_KEY

__all__ = ["MemoryCache"]

logger = logging.getLogger("opero")


@final
class _SelfRef(weakref.ref):  # type: ignore[type-arg]
    """The weak ``self`` of a stored key: tells its cache when the instance is gone.

    Only stored keys carry one (lookups use the plain ``weakref.ref``, which
    Python shares per object); it compares and hashes alike.
    """

    __slots__ = ("dead", "key", "plain")

    dead: list[_SelfRef]
    key: Hashable | None
    #: The instance's plain ``weakref.ref``, kept alive so lookups reuse it.
    plain: weakref.ref[Any]


def _instance_ended(watcher: _SelfRef) -> None:
    # Runs wherever the instance is freed, possibly inside a backend call: so it only
    # queues the key (an atomic append); the cache drops it at its next store.
    watcher.dead.append(watcher)


@final
class MemoryCache(CacheBase):
    """One decorated function's in-memory cache: keys, an LRU store, and failure handling.

    A cache that fails never fails the call: a key, read or write error is
    logged once at WARNING (per kind of failure, until that kind works
    again), counted in ``errors``, and the call goes on as if it missed.
    """

    __slots__ = (
        "__weakref__",
        "_dead",
        "_failing",
        "_keys",
        "_owner",
        "backend",
        "errors",
        "key",
        "namespace",
        "peek",
        "report",
        "ttl",
    )

    #: Reads and writes are in-process: the async shell calls them without awaiting.
    is_async = False
    #: A second look before computing is free here (single-flight's late-finisher check).
    recheck = True

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        ttl: float | None = None,
        namespace: str = "opero",
        key: Callable[..., Hashable] | None = None,
        maxsize: int | None = 4096,
        ignore: tuple[str, ...] = (),
    ) -> None:
        self.namespace = namespace
        self.ttl = None if ttl is None else float(ttl)
        self.backend = MemoryBackend(maxsize=maxsize, ttl=self.ttl)
        #: The hot read: the backend's own ``get``, which may raise (see :meth:`get`).
        self.peek: Callable[[Hashable], Any] = self.backend.get
        #: Failed key, read and write operations, counted.
        self.errors = 0
        self._failing: set[str] = set()
        #: Says once why some calls cannot be keyed, and what to do.
        self.report = KeyReport(func, ignore)
        self._keys = None if key is not None else Keys(func, ignore, weak_self=True)
        #: Weak references to instances that are gone: their entries go at the next store.
        self._dead: list[_SelfRef] = []
        #: ``key(args, kwargs)``: the call's key, or ``NO_KEY`` to call uncached.
        self.key: KeyFunction = self._key_function(func, key)

    def _key_function(
        self, func: Callable[..., Any], custom: Callable[..., Hashable] | None
    ) -> KeyFunction:
        if custom is None:
            return self._keys.key  # type: ignore[union-attr]

        def custom_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            try:
                return custom(func, *args, **kwargs)
            except Exception as exc:
                self.errors += 1
                self.report.custom_failed(exc)
                return NO_KEY

        return custom_key

    def own(self, root: Any, *path: str) -> None:
        """Tie this cache and its backend to their pipeline, so they pickle as its own."""
        super().own(root, *path)
        self.backend.own(root, *path, "backend")

    def get(self, key: Hashable) -> Any:
        """The value cached under ``key``, or ``MISSING``; never raises.

        The read contract of both layers: ``get`` (and ``aget``) never raise, and
        answer ``MISSING`` for no entry, an expired one, ``NO_KEY`` or a failed
        read (logged and counted).  ``peek`` is the hit path's read: it may raise
        (here for an unhashable key, or a ``__hash__`` that raises), and its
        caller then asks ``get``.  A key that cannot be looked up as it is is
        frozen first; one that cannot be frozen either is a key failure.
        """
        try:
            value = self.peek(key)
        except Exception as exc:
            usable = self.hashable(key)
            if usable is NO_KEY:
                return MISSING
            if usable is key:  # the key hashes: the lookup itself failed
                self._failed("read", exc)
                return MISSING
            return self.get(usable)
        if self._failing:
            self._failing.discard("read")
        return value

    def hashable(self, key: Hashable) -> Hashable:
        """``key`` itself if it hashes, else its frozen form, or ``NO_KEY`` if it has none."""
        try:
            hash(key)
        except Exception:  # TypeError, or whatever a user's __hash__ raises
            try:
                return freeze(key)
            except Exception:
                self.errors += 1
                self.report.unkeyable(self._keys, key, persistent=False)
                return NO_KEY
        return key

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value``; a failure is logged and counted, never raised."""
        if self._dead:
            self._drop_dead()
        if self._keys is not None and self._keys.weak:
            key = self._watched(key)
        try:
            self.backend.set(key, value)
        except Exception as exc:
            self._failed("write", exc)
        else:
            if self._failing:
                self._failing.discard("write")

    def _watched(self, stored: Hashable) -> Hashable:
        """``stored`` with its weak ``self`` replaced by one that reports the instance's end."""
        if type(stored) is not tuple or not stored:
            return stored
        key: tuple[Any, ...] = stored
        # A general signature's key is (args, kwargs): ``self`` is then the first of args.
        general = type(key[0]) is tuple and key[0] and isinstance(key[0][0], weakref.ref)
        outer = key[0] if general else key
        held = outer[0]
        if not isinstance(held, weakref.ref) or (instance := held()) is None:
            return key  # not weakly held (no weak references to its type)
        watcher = _SelfRef(instance, _instance_ended)
        watcher.dead = self._dead
        watcher.plain = held
        watched: tuple[Any, ...] = (watcher, *outer[1:])
        if general:
            watched = (watched, *key[1:])
        watcher.key = watched
        return watched

    def _drop_dead(self) -> None:
        """Forget the entries of instances that are gone."""
        while self._dead:
            try:
                watcher = self._dead.pop()
            except IndexError:  # another thread took the last one
                return
            key, watcher.key = watcher.key, None
            if key is not None:
                self.backend.delete(key)

    def clear(self) -> None:
        """Forget every entry of this function."""
        self._dead.clear()
        self.backend.clear()

    async def aget(self, key: Hashable) -> Any:
        """:meth:`get`, for callers that treat every layer as async."""
        return self.get(key)

    async def aset(self, key: Hashable, value: Any) -> None:
        """:meth:`set`, for callers that treat every layer as async."""
        self.set(key, value)

    def clear_namespace(self, namespace: str | None) -> None:
        """Forget this function's entries if it is in ``namespace`` (None: any)."""
        if namespace is None or namespace == self.namespace:
            self.clear()

    def stats(self) -> dict[str, Any]:
        """Backend, entries and namespace of this function's cache."""
        if self._dead:
            self._drop_dead()
        return {"backend": "memory", "entries": self.backend.size(), "namespace": self.namespace}

    def _failed(self, kind: str, exc: Exception) -> None:
        self.errors += 1
        if kind not in self._failing:
            self._failing.add(kind)
            logger.warning(
                "opero cache %s failed (%s: %s); calling without the cache. "
                "Further %s failures are counted, not logged, until one succeeds.",
                kind,
                type(exc).__name__,
                exc,
                kind,
            )
