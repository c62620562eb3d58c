"""Cache policy: keys, backends, single-flight and failure handling.

The cache is the outermost layer: a hit skips rate limiting, retries and the
call itself.  Everything here is synchronous and in-memory for the memory
backend; the shells in ``opero.core.shell`` decide when to look up, compute
and store.

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

from opero.core.backends.memory import MISSING, MemoryBackend
from opero.exceptions import ConfigurationError

__all__ = ["BACKENDS", "MISSING", "CacheLayer", "clear_cache", "freeze", "key_function"]

logger = logging.getLogger("opero")

#: Backends opero knows, with the extra that provides each (None: built in).
BACKENDS: dict[str, str | None] = {"memory": None, "disk": "disk", "sqlite": None, "redis": "redis"}

_LIVE_LAYERS: weakref.WeakSet[CacheLayer] = weakref.WeakSet()


@final
class _Tag:
    """Type markers inside frozen keys, so ``[1]`` and ``(1,)`` stay distinct."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __reduce__(self) -> str:
        return f"_{self.name.upper()}_TAG"


_DICT_TAG, _LIST_TAG, _SET_TAG, _PICKLE_TAG = (_Tag(n) for n in ("dict", "list", "set", "pickle"))


def freeze(value: Any) -> Hashable:
    """An equal-for-equal hashable stand-in for ``value``.

    Dicts (in any insertion order), lists, sets and tuples are frozen
    recursively; other unhashable objects by their pickle.  Raises
    ``TypeError`` for an object that is neither hashable nor picklable.
    """
    if isinstance(value, dict):
        items = sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=_order)
        return (_DICT_TAG, tuple(items))
    if isinstance(value, list):
        return (_LIST_TAG, tuple(freeze(v) for v in value))
    if isinstance(value, tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return (_SET_TAG, frozenset(freeze(v) for v in value))
    try:
        hash(value)
    except TypeError:
        import pickle  # noqa: PLC0415 - rare path; keeps `import opero` light

        try:
            return (_PICKLE_TAG, type(value).__qualname__, pickle.dumps(value, protocol=5))
        except Exception as exc:
            msg = f"cannot build a cache key from a {type(value).__qualname__}"
            raise TypeError(msg) from exc
    return value  # type: ignore[no-any-return]


def _order(item: tuple[Hashable, Hashable]) -> tuple[str, str]:
    return (type(item[0]).__qualname__, repr(item[0]))


KeyFunction = Callable[[tuple[Any, ...], dict[str, Any]], Hashable]


def key_function(func: Callable[..., Any]) -> KeyFunction:
    """A function from one call's ``(args, kwargs)`` to its key, specialised to ``func``.

    The signature is studied once.  When every parameter is
    positional-or-keyword and the call passes them all positionally, the key
    is the ``args`` tuple itself; otherwise arguments are bound by name with
    defaults applied.  A call that does not fit the signature gets ``MISSING``
    (it is not cached; the call itself then raises its own ``TypeError``).
    """
    import inspect  # noqa: PLC0415 - decoration time only; keeps `import opero` light

    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have no signature
        return lambda args, kwargs: (args, tuple(sorted(kwargs.items()))) if kwargs else args
    params = tuple(signature.parameters.values())
    if not all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params):

        def general(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return MISSING
            bound.apply_defaults()
            return (bound.args, tuple(sorted(bound.kwargs.items())))

        return general

    arity = len(params)
    names = tuple(p.name for p in params)
    known = frozenset(names)
    defaults = tuple(p.default for p in params)
    empty = inspect.Parameter.empty

    def simple(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if not kwargs and len(args) == arity:
            return args
        given = len(args)
        if (
            given > arity
            or not known.issuperset(kwargs)
            or not kwargs.keys().isdisjoint(names[:given])
        ):
            return MISSING
        values = list(args)
        for name, default in zip(names[given:], defaults[given:], strict=True):
            value = kwargs.get(name, default)
            if value is empty:
                return MISSING
            values.append(value)
        return tuple(values)

    return simple


@final
class CacheLayer:
    """One decorated function's cache: keys, a backend, and failure handling.

    A cache that fails never fails the call: a key, read or write error is
    logged once at WARNING (per kind of failure, until that kind works
    again), counted in ``errors``, and the call goes on as if it missed.
    """

    __slots__ = ("__weakref__", "_failing", "backend", "errors", "key", "namespace", "read", "ttl")

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        backend: str = "memory",
        ttl: float | None = None,
        namespace: str = "opero",
        key: Callable[..., Hashable] | None = None,
        maxsize: int | None = 4096,
        backend_config: dict[str, Any] | None = None,
    ) -> None:
        _validate(
            backend=backend,
            ttl=ttl,
            namespace=namespace,
            key=key,
            maxsize=maxsize,
            backend_config=backend_config,
        )
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
        _LIVE_LAYERS.add(self)

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

    def get(self, key: Hashable) -> Any:
        """The value cached under ``key``, or ``MISSING`` (also when the read failed)."""
        try:
            value = self.read(key)
        except TypeError:
            try:
                frozen = freeze(key)
            except TypeError:
                return MISSING  # no key can be built; hashable() reports it
            return self.get(frozen)
        except Exception as exc:
            self._failed("read", exc)
            return MISSING
        if self._failing:
            self._failing.discard("read")
        return value

    def hashable(self, key: Hashable) -> Hashable:
        """``key`` itself if hashable, else its frozen form, or ``MISSING`` if it has none."""
        try:
            hash(key)
        except TypeError:
            try:
                return freeze(key)
            except TypeError as exc:
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


def _validate(
    *,
    backend: str,
    ttl: float | None,
    namespace: str,
    key: Callable[..., Hashable] | None,
    maxsize: int | None,
    backend_config: dict[str, Any] | None,
) -> None:
    if backend not in BACKENDS:
        accepted = ", ".join(repr(b) for b in BACKENDS)
        msg = f"cache_backend must be one of {accepted}; got {backend!r}"
        raise ConfigurationError(msg)
    if backend != "memory":
        extra = BACKENDS[backend]
        install = f' (pip install "opero[{extra}]")' if extra else ""
        msg = (
            f"cache_backend={backend!r} is not available in this version of opero yet{install}; "
            'use cache_backend="memory"'
        )
        raise ConfigurationError(msg)
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0
    ):
        msg = f"cache_ttl must be a number of seconds > 0, or None for no expiry; got {ttl!r}"
        raise ConfigurationError(msg)
    if not isinstance(namespace, str) or not namespace:
        msg = f"cache_namespace must be a non-empty str, got {namespace!r}"
        raise ConfigurationError(msg)
    if key is not None and not callable(key):
        msg = (
            f"cache_key must be a callable called as cache_key(func, *args, **kwargs), got {key!r}"
        )
        raise ConfigurationError(msg)
    if maxsize is not None and (
        isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1
    ):
        msg = f"cache_maxsize must be an int >= 1, or None for no bound; got {maxsize!r}"
        raise ConfigurationError(msg)
    if backend_config is not None and not isinstance(backend_config, dict):
        msg = f"cache_backend_config must be a dict, got {type(backend_config).__name__}"
        raise ConfigurationError(msg)


def clear_cache(namespace: str | None = None) -> None:
    """Clear every opero cache this process opened, or only those of ``namespace``.

    Example:
        >>> from opero import clear_cache
        >>> clear_cache()                       # everything
        >>> clear_cache(namespace="api_cache")  # one namespace
    """
    for layer in list(_LIVE_LAYERS):
        if namespace is None or layer.namespace == namespace:
            layer.clear()
