"""``cache_backend="sqlite"``: one SQLite file, safe for many threads and processes.

Built on the standard library alone.  WAL mode lets readers and one writer work
at once across processes; a busy timeout makes concurrent writers queue
instead of failing.  Each thread gets its own connection (sqlite3 connections
must not be shared between threads), closed when that thread ends
(``ThreadConnections``), so a pool of short-lived threads does not pile up open
files.  Expired rows are purged lazily: a read
that finds one deletes it, and every 256th write sweeps the table.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from opero.core.backends.base import count_namespaces, empty_stats, located
from opero.core.backends.connections import ThreadConnections
from opero.core.backends.disk import private_directory

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS opero_cache (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires REAL
)
"""
_SWEEP_EVERY = 256


class SqliteStore:
    """An ``opero_cache`` table in one SQLite file."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location, self.health = located(self.kind, path)
        self._writes = itertools.count()
        # A setup that fails (not a database, locked, unreadable) closes its connection.
        self._connections = ThreadConnections(self._connect, _prepare)
        self._connection = self._connections.get

    def _connect(self) -> sqlite3.Connection:
        private_directory(self.path.parent)
        if not self.path.exists():
            # Created owner-only: cached results can hold private data.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        return sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )

    def get(self, key: str) -> bytes | None:
        conn = self._connection()
        row = conn.execute(
            "SELECT value, expires FROM opero_cache WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        value, expires = row
        if expires is not None and expires <= time.time():
            conn.execute(
                "DELETE FROM opero_cache WHERE key = ? AND expires <= ?", (key, time.time())
            )
            return None
        return bytes(value)

    def set(self, key: str, data: bytes, ttl: float | None) -> None:
        # The row's own expiry is wall time with a margin, only for purging:
        # opero checks expiry in the entry itself, on the injectable clock.
        expires = None if ttl is None else time.time() + ttl + 60.0
        conn = self._connection()
        conn.execute(
            "INSERT OR REPLACE INTO opero_cache (key, value, expires) VALUES (?, ?, ?)",
            (key, sqlite3.Binary(data), expires),
        )
        if next(self._writes) % _SWEEP_EVERY == _SWEEP_EVERY - 1:
            conn.execute("DELETE FROM opero_cache WHERE expires <= ?", (time.time(),))

    def clear(self, prefix: str) -> int:
        if not self._connections.opened() and not self.path.exists():
            return 0  # never used: do not create it just to clear it
        cursor = self._connection().execute(
            "DELETE FROM opero_cache WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return cursor.rowcount

    def stats(self, prefix: str) -> dict[str, Any]:
        if not self._connections.opened() and not self.path.exists():
            return empty_stats(self.kind, self.location)
        conn = self._connection()
        rows = conn.execute(
            "SELECT key, length(value) FROM opero_cache WHERE substr(key, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchall()
        return {
            "backend": self.kind,
            "location": self.location,
            "entries": len(rows),
            "bytes": sum(size for _, size in rows),
            "namespaces": count_namespaces([key for key, _ in rows]),
        }

    def close(self) -> None:
        self._connections.close_all()


def _prepare(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(_SCHEMA)
