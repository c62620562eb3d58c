"""``cache_backend="redis"``: a cache shared by every process and host that uses the server.

redis-py (extra ``[redis]``): the sync client serves sync functions, a
``redis.asyncio`` client serves async ones so they never block the loop.  An
asyncio client belongs to the loop it first ran on, so there is one per loop.
Entries expire on the server (``PX``) as well as by the expiry in each entry.
The connection settings and clients come from ``redis_client``.
"""

from __future__ import annotations

from typing import Any

from opero.core import forksafe
from opero.core.backends.base import Health, count_namespaces
from opero.core.backends.coalesce import SharedReads
from opero.core.backends.redis_client import (
    call_bound,
    close_client,
    close_with_loop,
    describe,
    make_client,
    redis_settings,
)

__all__ = ["RedisStore"]


class RedisStore:
    """Keys in one redis database, through one sync client and one async client per loop."""

    kind = "redis"

    def __init__(self, config: dict[str, Any]) -> None:
        self._given = config.get("client")
        self._given_async = config.get("async_client")
        plain = {k: v for k, v in config.items() if k not in ("client", "async_client")}
        if self._given is not None and self._given_async is None and not plain:
            # Async functions need an asyncio client: reach the server the given one uses.
            kw = self._given.connection_pool.connection_kwargs
            plain = {k: kw[k] for k in ("host", "port", "db", "password") if kw.get(k) is not None}
        self.settings = redis_settings(plain, "cache_backend_config")
        self.location = "a given client" if self._given else describe(self.settings)
        self.health = Health(f"redis {self.location}", lease=call_bound(self.settings))
        self._client: Any = self._given
        #: id(loop) -> (loop, client, closer): an asyncio client belongs to one loop.
        self._async: dict[int, tuple[Any, Any, Any]] = {}
        self._reads = SharedReads()
        self._lock = forksafe.lock()

    def client(self) -> Any:
        """The sync client, created on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(self.settings, use_async=False)
        return self._client

    async def async_client(self) -> Any:
        """The asyncio client of the running loop, closed when that loop shuts down."""
        import asyncio  # noqa: PLC0415

        if self._given_async is not None:
            return self._given_async
        loop = asyncio.get_running_loop()
        entry = self._async.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        client = make_client(self.settings, use_async=True)
        closer = close_with_loop(client)
        with self._lock:
            self._async = {k: e for k, e in self._async.items() if not e[0].is_closed()}
            self._async[id(loop)] = (loop, client, closer)
        await closer.asend(None)
        return client

    def get(self, key: str) -> bytes | None:
        value = self.client().get(key)
        return bytes(value) if value is not None else None

    def set(self, key: str, data: bytes, ttl: float | None) -> None:
        px = None if ttl is None else max(1, int(ttl * 1000) + 60_000)
        self.client().set(key, data, px=px)

    async def aget(self, key: str) -> bytes | None:
        """Like :meth:`get`, on the running loop's asyncio client; concurrent reads of
        one key share one round trip (see :mod:`~opero.core.backends.coalesce`)."""
        value = await self._reads.read(key, lambda: self._aget(key))
        return bytes(value) if value is not None else None

    async def _aget(self, key: str) -> Any:
        return await (await self.async_client()).get(key)

    async def aset(self, key: str, data: bytes, ttl: float | None) -> None:
        """Like :meth:`set`, on the running loop's asyncio client."""
        px = None if ttl is None else max(1, int(ttl * 1000) + 60_000)
        await (await self.async_client()).set(key, data, px=px)

    def _keys(self, prefix: str) -> list[str]:
        pattern = prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
        pattern = pattern.replace("[", "\\[") + "*"
        return [
            k.decode() if isinstance(k, bytes) else k
            for k in self.client().scan_iter(match=pattern, count=1000)
        ]

    def clear(self, prefix: str) -> int:
        keys = self._keys(prefix)
        client = self.client()
        removed = 0
        for start in range(0, len(keys), 500):
            removed += int(client.delete(*keys[start : start + 500]))
        return removed

    def stats(self, prefix: str) -> dict[str, Any]:
        keys = self._keys(prefix)
        return {
            "backend": self.kind,
            "location": self.location,
            "entries": len(keys),
            "bytes": None,  # not cheap on a shared server
            "namespaces": count_namespaces(keys),
        }

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._client is not self._given:
                close_client(self._client)
            self._client = self._given
