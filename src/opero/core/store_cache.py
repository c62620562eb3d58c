"""A decorated function's cache in a persistent or shared store (disk, sqlite, redis).

Keys are ``opero:cache:{namespace}:{module.qualname}:{digest of the arguments}``
(or of what ``cache_key`` returned); values are envelopes from
:class:`~opero.core.serialize.Codec`.  Stores are opened once per location and
shared by every function that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, final

from opero.core import clock
from opero.core.backends.base import ByteStore, function_prefix
from opero.core.cache_base import CacheBase
from opero.core.key_report import KeyReport
from opero.core.keys import KeyFunction, Keys, digest, freeze
from opero.core.sentinels import MISSING, NO_KEY
from opero.core.serialize import Codec, UnreadableEntryError

__all__ = ["StoreCache"]


@final
class StoreCache(CacheBase):
    """One decorated function's cache in a persistent or shared store (disk, sqlite, redis).

    Keys are ``opero:{namespace}:{module.qualname}:{digest of the arguments}``
    (or of what ``cache_key`` returned); values are envelopes from
    :class:`~opero.core.serialize.Codec`.  Every failure of the store, of
    decoding or of a signature check is counted, reported once per store and
    kind by the store's :class:`~opero.core.backends.base.Health`, and
    answered as a miss.
    """

    #: A second look would cost a round trip on every miss; a rare duplicate computation is cheaper.
    recheck = False

    __slots__ = (
        "__weakref__",
        "_owner",
        "codec",
        "errors",
        "is_async",
        "key",
        "namespace",
        "prefix",
        "report",
        "store",
        "ttl",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        store: ByteStore,
        codec: Codec,
        ttl: float | None = None,
        namespace: str = "opero",
        key: Callable[..., Hashable] | None = None,
        ignore: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.codec = codec
        self.namespace = namespace
        self.ttl = None if ttl is None else float(ttl)
        module = getattr(func, "__module__", None) or "?"
        qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
        self.prefix = function_prefix(namespace, f"{module}.{qualname}")
        #: Failed operations of this function, counted.
        self.errors = 0
        #: The store has asyncio methods (redis): the async shell awaits them.
        self.is_async = hasattr(store, "aget")
        #: Says once why some calls cannot be keyed, and what to do.
        self.report = KeyReport(func, ignore)
        self.key: KeyFunction = self._key_function(func, key, ignore)

    def _key_function(
        self,
        func: Callable[..., Any],
        custom: Callable[..., Hashable] | None,
        ignore: tuple[str, ...],
    ) -> KeyFunction:
        prefix = self.prefix
        keys = Keys(func, ignore) if custom is None else None

        def store_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            if keys is not None:
                part = keys.key(args, kwargs)
                if part is NO_KEY:
                    return NO_KEY
            else:
                try:
                    part = custom(func, *args, **kwargs)  # type: ignore[misc]
                except Exception as exc:
                    self.errors += 1
                    self.report.custom_failed(exc)
                    return NO_KEY
                if isinstance(part, str):
                    return prefix + part
            try:
                return prefix + digest(freeze(part))
            except Exception:  # a value with no pickle: a lock, a client, a local class
                self.errors += 1
                self.report.unkeyable(keys, part, persistent=True)
                return NO_KEY

        return store_key

    def get(self, key: Hashable) -> Any:
        """The value under ``key``, or ``MISSING``; never raises.

        The read contract of both layers: ``get`` and ``aget`` never raise, and
        answer ``MISSING`` for no entry, an expired one, ``NO_KEY``, a store
        that is resting after failures, or a failed read or decode (counted and
        reported).  ``peek``, the hit path's read, may raise in general; here it
        is ``get`` and never does.
        """
        if key is NO_KEY or not self.store.health.available():
            return MISSING
        try:
            data = self.store.get(key)  # type: ignore[arg-type]
        except Exception as exc:
            self._failed("read", exc)
            return MISSING
        return self._decode(data)

    peek = get

    async def aget(self, key: Hashable) -> Any:
        """:meth:`get` on the store's asyncio client; never raises."""
        if key is NO_KEY or not self.store.health.available():
            return MISSING
        try:
            data = await self.store.aget(key)  # type: ignore[attr-defined]
        except Exception as exc:
            self._failed("read", exc)
            return MISSING
        return self._decode(data)

    def _decode(self, data: bytes | None) -> Any:
        """The value in ``data``; a read counts as healthy only once it decoded."""
        value = MISSING
        if data is not None:
            try:
                value = self.codec.decode(data, clock.wall())
            except UnreadableEntryError as exc:
                self._failed(exc.kind, exc)
                return MISSING
        self.store.health.succeeded("read")
        return value

    def hashable(self, key: Hashable) -> Hashable:
        """Store keys are strings already (or ``NO_KEY``)."""
        return key

    def _envelope(self, value: Any) -> bytes | None:
        """``value`` encoded to store, or None when the store rests or encoding failed."""
        if not self.store.health.available():
            return None
        expires = None if self.ttl is None else clock.wall() + self.ttl
        try:
            return self.codec.encode(value, expires)
        except Exception as exc:
            self._failed("encode", exc)
            return None

    def _wrote(self, error: Exception | None) -> None:
        if error is None:
            self.store.health.succeeded("write")
        else:
            self._failed("write", error)

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value``; a failure is counted and reported, never raised."""
        data, error = self._envelope(value), None
        if data is not None:
            try:
                self.store.set(key, data, self.ttl)  # type: ignore[arg-type]
            except Exception as exc:
                error = exc
            self._wrote(error)

    async def aset(self, key: Hashable, value: Any) -> None:
        """:meth:`set` on the store's asyncio client."""
        data, error = self._envelope(value), None
        if data is None:
            return
        try:
            await self.store.aset(key, data, self.ttl)  # type: ignore[attr-defined]
        except Exception as exc:
            error = exc
        self._wrote(error)

    def clear(self) -> None:
        """Forget every entry of this function in the store."""
        try:
            self.store.clear(self.prefix)
        except Exception as exc:
            self._failed("clear", exc)

    def clear_namespace(self, namespace: str | None) -> None:
        """Handled per store by :func:`clear_cache` (one sweep per store, not per function)."""

    def stats(self) -> dict[str, Any]:
        """What the store holds for this function (entries, bytes where cheap)."""
        try:
            return self.store.stats(self.prefix)
        except Exception as exc:
            self._failed("read", exc)
            return {"backend": self.store.kind, "location": self.store.location}

    def _failed(self, kind: str, exc: BaseException) -> None:
        self.errors += 1
        self.store.health.failed(kind, exc)
