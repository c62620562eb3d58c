"""``cache_backend="disk"``: results that survive a restart, on ``diskcache``.

diskcache (extra ``[disk]``) is a mature, process-safe store on SQLite plus
files.  The directory defaults to the user's cache directory (``user_cache_dir``,
standard library only, so the sqlite cache needs no extra either) and is created
readable by its owner only: cached results can hold private data.  The cache
is opened on first use, not at decoration time, so an unwritable directory
degrades to uncached calls with a warning instead of breaking an import.

diskcache keeps one sqlite3 connection per thread and leaves it open when the
thread ends (a ResourceWarning on Python 3.13, open files until then); the
store's ``Cache`` hands those connections to ``ThreadConnections``, which closes
each when its thread ends and all of them on ``close()``.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

from opero.core.backends.base import count_namespaces, empty_stats, located
from opero.core.backends.connections import ThreadConnections
from opero.exceptions import ConfigurationError

__all__ = ["DiskStore", "default_directory", "user_cache_dir"]


def user_cache_dir() -> Path:
    """opero's directory in the user's cache directory, by the platform's convention.

    The same place as ``platformdirs.user_cache_dir("opero")`` (which earlier
    releases asked), worked out with the standard library: the sqlite cache is
    built on ``sqlite3`` alone and must not need an extra for its default path.

    * Windows: ``%LOCALAPPDATA%\\opero\\opero\\Cache`` (platformdirs' author and
      app folders), ``~\\AppData\\Local`` when the variable is unset;
    * macOS: ``~/Library/Caches/opero``;
    * elsewhere (Linux, BSD): ``$XDG_CACHE_HOME/opero``, or ``~/.cache/opero`` when
      the variable is unset, blank or relative (the XDG spec ignores relative paths).
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "opero" / "opero" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "opero"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "opero"


def default_directory(subdir: str) -> Path:
    """``<user cache dir>/opero/<subdir>``: where a cache without a configured place lives."""
    return user_cache_dir() / subdir


def require_disk() -> None:
    """Raise ConfigurationError naming the extra if diskcache is missing."""
    try:
        import diskcache  # noqa: F401, PLC0415
    except ImportError as exc:
        msg = 'cache_backend="disk" needs diskcache: pip install "opero[disk]"'
        raise ConfigurationError(msg) from exc


def private_directory(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner only, if it does not exist."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    return path


@functools.cache
def _cache_class() -> type[Any]:
    """``diskcache.Cache`` with its per-thread connections in a ``ThreadConnections``.

    diskcache reaches its connection only through ``_con`` (opening it on first
    use in a thread, after a fork too) and ``close`` (this thread's); both are
    replaced, and the rest of diskcache is used as it is.
    """
    import diskcache  # noqa: PLC0415 - optional dependency
    from diskcache.core import DBNAME  # noqa: PLC0415

    class Cache(diskcache.Cache):  # type: ignore[misc] # diskcache is untyped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._connections = ThreadConnections(self._connect, self._configure)
            super().__init__(*args, **kwargs)

        @property
        def _con(self) -> sqlite3.Connection:
            return self._connections.get()

        def _connect(self) -> sqlite3.Connection:
            # diskcache's own arguments, plus check_same_thread=False so that the
            # connection may be closed from the thread that frees its owner.
            return sqlite3.connect(
                os.path.join(self.directory, DBNAME),
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )

        def _configure(self, connection: sqlite3.Connection) -> None:
            # As diskcache: sqlite_* settings are pragmas that hold per connection.
            try:
                settings = connection.execute("SELECT key, value FROM Settings").fetchall()
            except sqlite3.OperationalError:  # a new cache: no Settings table yet
                return
            for key, value in settings:
                if key.startswith("sqlite_"):
                    self.reset(key, value, update=False)

        def close(self) -> None:
            """Close this thread's connection (diskcache's meaning of ``close``)."""
            self._connections.close_current()

        def close_all(self) -> None:
            """Close every thread's connection."""
            self._connections.close_all()

    return Cache


class DiskStore:
    """A diskcache ``Cache`` in one directory, shared by every function that names it."""

    kind = "disk"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location, self.health = located(self.kind, directory)
        self._cache: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        cache = self._cache
        if cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = _cache_class()(str(private_directory(self.directory)))
                cache = self._cache
        return cache

    def get(self, key: str) -> bytes | None:
        value = self._open().get(key, default=None, retry=True)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, data: bytes, ttl: float | None) -> None:
        # diskcache purges after ttl (plus a margin: opero checks expiry itself,
        # on the injectable clock, so tests need not wait for real time).
        expire = None if ttl is None else ttl + 60.0
        self._open().set(key, data, expire=expire, retry=True)

    def clear(self, prefix: str) -> int:
        if self._cache is None and not self.directory.exists():
            return 0  # never used: do not create it just to clear it
        cache = self._open()
        removed = 0
        for key in list(cache.iterkeys()):
            if isinstance(key, str) and key.startswith(prefix) and cache.delete(key, retry=True):
                removed += 1
        return removed

    def stats(self, prefix: str) -> dict[str, Any]:
        if self._cache is None and not self.directory.exists():
            return empty_stats(self.kind, self.location)
        cache = self._open()
        keys = [k for k in cache.iterkeys() if isinstance(k, str) and k.startswith(prefix)]
        return {
            "backend": self.kind,
            "location": self.location,
            "entries": len(keys),
            "bytes": cache.volume(),
            "namespaces": count_namespaces(keys),
        }

    def close(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.close_all()
                self._cache = None
