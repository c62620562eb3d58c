"""Helpers for the persistent cache backend tests: a place per test in disk, sqlite and redis.

Redis tests use database 9 of the server on 127.0.0.1:6379 (reserved for
tests) and a namespace no other test uses; its keys are deleted afterwards.
Without a server they are skipped, except under ``CI=true``, where a missing
server is a failure: CI must not pass by skipping them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: The database tests may write to; nothing else should use it.
REDIS_DB = 9
IN_CI = os.environ.get("CI") == "true"
#: Every backend, and those that keep bytes outside the process.
ALL_BACKENDS = ("memory", "disk", "sqlite", "redis")
STORE_BACKENDS = ("disk", "sqlite", "redis")


def unavailable(reason: str) -> None:
    """Skip for a developer without redis; fail under CI=true, where redis must be there."""
    if IN_CI:
        pytest.fail(f"{reason}, and CI=true: the redis cache must be tested in CI")
    pytest.skip(f"{reason} (start one, or set CI=true to turn this skip into a failure)")


def direct_client(port: int = REDIS_PORT, db: int = REDIS_DB) -> Any:
    """A redis client that gives up at once, for the tests' own reads and checks."""
    import redis  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    return redis.Redis(
        host=REDIS_HOST,
        port=port,
        db=db,
        socket_connect_timeout=0.5,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
    )


def answers(port: int) -> bool:
    """Whether a redis-server answers PING on ``port``."""
    import redis  # noqa: PLC0415

    with closing(direct_client(port)) as client:
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False


class Backend:
    """One backend as a test uses it: decorator settings, and raw access to what it stored."""

    def __init__(self, name: str, config: dict[str, Any] | None, namespace: str) -> None:
        self.name = name
        self.config = config
        self.namespace = namespace
        self.clients: list[Any] = []

    def kwargs(self, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
        """``@opero`` keyword arguments for a cache on this backend."""
        settings: dict[str, Any] = {
            "cache": True,
            "cache_backend": self.name,
            "cache_namespace": namespace or self.namespace,
        }
        if self.config is not None:
            settings["cache_backend_config"] = self.config
        return settings | extra

    def private(self) -> Backend:
        """The same place, through a store object of its own (its own once-only warnings).

        Disk and sqlite stores are per directory, so per test already; for redis
        a client of our own makes a separate store.
        """
        if self.name != "redis":
            return self
        client = direct_client()
        self.clients.append(client)
        twin = Backend("redis", {"client": client}, self.namespace)
        twin.clients = self.clients
        return twin

    def raw_keys(self) -> list[str]:
        """Every key stored under this backend's namespace, read without opero."""
        prefix = f"opero:cache:{self.namespace}:"
        if self.name == "disk":
            import diskcache  # noqa: PLC0415

            with diskcache.Cache(self.config["directory"]) as cache:  # type: ignore[index]
                return sorted(k for k in cache.iterkeys() if k.startswith(prefix))
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.config["path"])) as conn:  # type: ignore[index]
                rows = conn.execute("SELECT key FROM opero_cache").fetchall()
            return sorted(key for (key,) in rows if key.startswith(prefix))
        with closing(direct_client()) as client:
            return sorted(k.decode() for k in client.scan_iter(match=f"{prefix}*"))

    def raw_get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, read without opero."""
        if self.name == "disk":
            import diskcache  # noqa: PLC0415

            with diskcache.Cache(self.config["directory"]) as cache:  # type: ignore[index]
                value = cache.get(key)
            return None if value is None else bytes(value)
        if self.name == "sqlite":
            with closing(sqlite3.connect(self.config["path"])) as conn:  # type: ignore[index]
                row = conn.execute("SELECT value FROM opero_cache WHERE key = ?", (key,)).fetchone()
            return None if row is None else bytes(row[0])
        with closing(direct_client()) as client:
            value = client.get(key)
        return None if value is None else bytes(value)

    def raw_set(self, key: str, data: bytes) -> None:
        """Overwrite the bytes under ``key`` without opero (to corrupt an entry)."""
        if self.name == "disk":
            import diskcache  # noqa: PLC0415

            with diskcache.Cache(self.config["directory"]) as cache:  # type: ignore[index]
                cache.set(key, data)
        elif self.name == "sqlite":
            with closing(sqlite3.connect(self.config["path"])) as conn:  # type: ignore[index]
                conn.execute("UPDATE opero_cache SET value = ? WHERE key = ?", (data, key))
                conn.commit()
        else:
            with closing(direct_client()) as client:
                client.set(key, data)


def make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    namespace = f"t{uuid.uuid4().hex}"
    if name == "disk":
        return Backend(name, {"directory": str(tmp_path / "disk-cache")}, namespace)
    if name == "sqlite":
        return Backend(name, {"path": str(tmp_path / "sqlite-cache" / "cache.db")}, namespace)
    if name == "redis":
        namespace = request.getfixturevalue("redis_namespace")
        config = {"host": REDIS_HOST, "port": REDIS_PORT, "db": REDIS_DB}
        return Backend(name, config, namespace)
    return Backend(name, None, namespace)


def store_warnings(caplog: pytest.LogCaptureFixture, func: Any) -> list[logging.LogRecord]:
    """WARNING records about the store behind the decorated ``func``."""
    name = func.__opero__.cache.store.health.name
    return [
        r
        for r in caplog.records
        if r.name == "opero" and r.levelno == logging.WARNING and name in r.getMessage()
    ]


def opero_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Every WARNING record of the ``opero`` logger."""
    return [r for r in caplog.records if r.name == "opero" and r.levelno == logging.WARNING]
