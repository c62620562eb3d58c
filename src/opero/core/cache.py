"""Cache policy: keys, backends and failure handling.

The cache is the outermost layer: a hit skips rate limiting, retries and the
call itself.  ``MemoryCache`` keeps objects in this process; ``StoreCache``
keeps signed or plain envelopes in a disk, sqlite or redis store.  The shells
in ``opero.core.shell`` decide when to look up, compute and store, with
single-flight from ``opero.core.single_flight``.

Keys are the call's arguments bound to the signature with defaults applied, so
``f(1)`` and ``f(x=1)`` share an entry.  For the common case (all arguments
positional, no defaults to fill in) the key is the ``args`` tuple itself: no
binding, no hashing beyond what the dict does.  Unhashable arguments (dicts,
lists, sets) are frozen into an equivalent hashable form.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Hashable
from typing import Any, final

from opero.core import validate
from opero.core.backends.base import namespace_prefix, opened_stores
from opero.core.backends.memory import MISSING, MemoryBackend
from opero.core.keys import KeyFunction, freeze, key_function
from opero.core.owned import Owned
from opero.core.serialize import Codec
from opero.core.store_cache import StoreCache, accept_keys, open_backend
from opero.exceptions import ConfigurationError

__all__ = [
    "BACKENDS",
    "MISSING",
    "CacheLayer",
    "MemoryCache",
    "StoreCache",
    "check_settings",
    "clear_cache",
    "freeze",
    "key_function",
    "make_cache",
    "open_backend",
]

logger = logging.getLogger("opero")

#: Backends opero knows, with the extra that provides each (None: built in).
BACKENDS: dict[str, str | None] = {"memory": None, "disk": "disk", "sqlite": None, "redis": "redis"}

_LIVE_LAYERS: weakref.WeakSet[MemoryCache | StoreCache] = weakref.WeakSet()


@final
class MemoryCache(Owned):
    """One decorated function's in-memory cache: keys, an LRU store, and failure handling.

    A cache that fails never fails the call: a key, read or write error is
    logged once at WARNING (per kind of failure, until that kind works
    again), counted in ``errors``, and the call goes on as if it missed.
    """

    __slots__ = (
        "__weakref__",
        "_failing",
        "_owner",
        "backend",
        "errors",
        "key",
        "namespace",
        "read",
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
    ) -> None:
        self.namespace = namespace
        self.ttl = None if ttl is None else float(ttl)
        self.backend = MemoryBackend(maxsize=maxsize, ttl=self.ttl)
        #: The backend's own ``get``: the shells call it directly on the hit path
        #: and fall back to :meth:`get` (which handles failures) if it raises.
        self.read: Callable[[Hashable], Any] = self.backend.get
        #: Failed key, read and write operations, counted.
        self.errors = 0
        self._failing: set[str] = set()
        #: ``key(args, kwargs)``: the call's key, or ``MISSING`` to call uncached.
        self.key: KeyFunction = self._key_function(func, key)

    def _key_function(
        self, func: Callable[..., Any], custom: Callable[..., Hashable] | None
    ) -> KeyFunction:
        if custom is None:
            return key_function(func)

        def custom_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            try:
                return custom(func, *args, **kwargs)
            except Exception as exc:
                self._failed("key", exc)
                return MISSING

        return custom_key

    def own(self, root: Any, *path: str) -> None:
        """Tie this cache and its backend to their pipeline, so they pickle as its own."""
        super().own(root, *path)
        self.backend.own(root, *path, "backend")

    def get(self, key: Hashable) -> Any:
        """The value cached under ``key``, or ``MISSING`` (also when the read failed).

        A key that cannot be looked up as it is (unhashable, or a ``__hash__``
        that raises) is frozen first; one that cannot be frozen either is a
        key failure, and the call goes on uncached.
        """
        try:
            value = self.read(key)
        except Exception as exc:
            usable = self.hashable(key)
            if usable is MISSING:
                return MISSING
            if usable is key:  # the key hashes: the lookup itself failed
                self._failed("read", exc)
                return MISSING
            return self.get(usable)
        if self._failing:
            self._failing.discard("read")
        return value

    def hashable(self, key: Hashable) -> Hashable:
        """``key`` itself if it hashes, else its frozen form, or ``MISSING`` if it has none."""
        try:
            hash(key)
        except Exception:  # TypeError, or whatever a user's __hash__ raises
            try:
                return freeze(key)
            except Exception as exc:
                self._failed("key", exc)
                return MISSING
        return key

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value``; a failure is logged and counted, never raised."""
        try:
            self.backend.set(key, value)
        except Exception as exc:
            self._failed("write", exc)
        else:
            if self._failing:
                self._failing.discard("write")

    def clear(self) -> None:
        """Forget every entry of this function."""
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
            self.backend.clear()

    def stats(self) -> dict[str, Any]:
        """Backend, entries and namespace of this function's cache."""
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


def make_cache(
    func: Callable[..., Any],
    *,
    backend: str = "memory",
    ttl: float | None = None,
    namespace: str = "opero",
    key: Callable[..., Hashable] | None = None,
    maxsize: int | None = 4096,
    backend_config: dict[str, Any] | None = None,
    serializer: str = "pickle",
    secret: str | bytes | None = None,
) -> CacheLayer:
    """Validate the cache settings and build ``func``'s cache layer.

    Raises ConfigurationError for a bad value, an unknown backend, or a
    backend whose optional package is missing (naming the extra to install).
    """
    check_settings(
        backend=backend,
        ttl=ttl,
        namespace=namespace,
        key=key,
        maxsize=maxsize,
        backend_config=backend_config,
        serializer=serializer,
        secret=secret,
    )
    config = dict(backend_config or {})
    codec = Codec(serializer, secret)
    if backend == "memory":
        accept_keys(config, set(), backend)
        if serializer != "pickle" or secret is not None:
            msg = "cache_serializer and cache_secret apply to disk, sqlite and redis caches only"
            raise ConfigurationError(msg)
        layer: CacheLayer = MemoryCache(
            func, ttl=ttl, namespace=namespace, key=key, maxsize=maxsize
        )
    else:
        store = open_backend(backend, config)
        layer = StoreCache(func, store=store, codec=codec, ttl=ttl, namespace=namespace, key=key)
    _LIVE_LAYERS.add(layer)
    return layer


def check_settings(
    *,
    backend: str,
    ttl: float | None,
    namespace: str,
    key: Callable[..., Hashable] | None,
    maxsize: int | None,
    backend_config: object,
    serializer: str,
    secret: str | bytes | None,
) -> None:
    """Check the cache settings by value alone, without opening a store (also with cache off)."""
    Codec(serializer, secret)  # checks cache_serializer and cache_secret
    validate.choice("cache_backend", backend, BACKENDS)
    if ttl is not None:
        validate.number("cache_ttl", ttl, exclusive=True, hint=", or None for no expiry")
    if not isinstance(namespace, str) or not namespace:
        msg = f"cache_namespace must be a non-empty str, got {validate.show(namespace)}"
        raise ConfigurationError(msg)
    validate.function("cache_key", key, "cache_key(func, *args, **kwargs)")
    if maxsize is not None:
        validate.integer("cache_maxsize", maxsize, hint=", or None for no bound")
    if backend_config is not None and not isinstance(backend_config, dict):
        msg = f"cache_backend_config must be a dict, got {type(backend_config).__name__}"
        raise ConfigurationError(msg)


def clear_cache(namespace: str | None = None) -> None:
    """Clear every opero cache this process opened, or only those of ``namespace``.

    Examples:
        >>> from opero import clear_cache
        >>> clear_cache()                       # everything
        >>> clear_cache(namespace="api_cache")  # one namespace
    """
    for layer in list(_LIVE_LAYERS):
        layer.clear_namespace(namespace)
    prefix = namespace_prefix(namespace)
    for store in opened_stores():
        try:
            store.clear(prefix)
        except Exception as exc:
            store.health.failed("clear", exc)


#: Either kind of cache layer; both offer key/read/get/hashable/set/clear/stats.
CacheLayer = MemoryCache | StoreCache
