"""Cache policy: keys, backends and failure handling.

The cache is the outermost layer: a hit skips rate limiting, retries and the
call itself.  ``MemoryCache`` keeps objects in this process; ``StoreCache``
keeps signed or plain envelopes in a disk, sqlite or redis store.  One call's
lookup is ``opero.core.cache_step`` (driven by the shells in
``opero.core.shell``), with single-flight from ``opero.core.single_flight``.

Keys are the call's arguments bound to the signature with defaults applied, so
``f(1)`` and ``f(x=1)`` share an entry.  For the common case (all arguments
positional, no defaults to fill in) the key is the ``args`` tuple itself: no
binding, no hashing beyond what the dict does.  Unhashable arguments (dicts,
lists, sets) are frozen into an equivalent hashable form.  ``cache_ignore``
leaves named parameters out of the key, and the memory cache holds a method's
``self`` weakly (see ``opero.core.memory_cache``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from opero.core import validate
from opero.core.backends.base import namespace_prefix, opened_stores
from opero.core.keys import freeze, ignored_names, key_function
from opero.core.memory_cache import MemoryCache
from opero.core.sentinels import MISSING, NO_KEY
from opero.core.serialize import Codec
from opero.core.store_cache import StoreCache
from opero.core.stores import accept_keys, open_backend
from opero.exceptions import ConfigurationError

__all__ = [
    "BACKENDS",
    "MISSING",
    "NO_KEY",
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
    ignore: object = (),
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
        ignore=ignore,
    )
    names = ignored_names(ignore)
    config = dict(backend_config or {})
    codec = Codec(serializer, secret)
    if backend == "memory":
        accept_keys(config, set(), backend)
        if serializer != "pickle" or secret is not None:
            msg = "cache_serializer and cache_secret apply to disk, sqlite and redis caches only"
            raise ConfigurationError(msg)
        layer: CacheLayer = MemoryCache(
            func, ttl=ttl, namespace=namespace, key=key, maxsize=maxsize, ignore=names
        )
    else:
        store = open_backend(backend, config)
        layer = StoreCache(
            func, store=store, codec=codec, ttl=ttl, namespace=namespace, key=key, ignore=names
        )
    if key is None:
        layer.report.per_request(func)
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
    ignore: object = (),
) -> None:
    """Check the cache settings by value alone, without opening a store (also with cache off).

    ``cache_ignore`` with ``cache_key`` is refused: ``cache_key`` is given every
    argument and builds the whole key, so it is where to leave one out.
    """
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
    if ignored_names(ignore) and key is not None:
        msg = (
            "cache_ignore cannot be combined with cache_key: cache_key(func, *args, **kwargs) "
            "is given every argument and builds the whole key, so leave parameters out there"
        )
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


#: Either kind of cache layer; both offer key/peek/get/aget/hashable/set/aset/clear/stats,
#: with one read contract (``MemoryCache.get``): ``get`` never raises, ``peek`` may.
CacheLayer = MemoryCache | StoreCache
