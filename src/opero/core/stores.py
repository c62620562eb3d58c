"""Which store a persistent cache setting names: its config checked, the store opened once.

A store is opened once per location and shared by every function that names
it (``opero.core.backends.base.open_store``); the CLI opens stores the same way.
"""

from __future__ import annotations

from typing import Any

from opero.core import validate
from opero.core.backends.base import ByteStore, open_store
from opero.exceptions import ConfigurationError

__all__ = ["accept_keys", "open_backend"]


def accept_keys(config: dict[str, Any], accepted: set[str], backend: str) -> None:
    """Reject ``cache_backend_config`` keys unknown to ``backend``, and locations not paths.

    ``directory`` and ``path`` must be a str or ``os.PathLike`` naming a str path
    (``directory`` may also be None for the default location).
    """
    import os  # noqa: PLC0415

    unknown = set(config) - accepted
    if unknown:
        names = ", ".join(sorted(accepted)) or "none"
        given = ", ".join(sorted(map(validate.show, unknown)))
        msg = f"cache_backend_config for {backend!r} got unknown keys {given}; accepted: {names}"
        raise ConfigurationError(msg)
    for name in ("directory", "path"):
        value = config.get(name)
        if value is None and name == "directory":
            continue
        if name in config:
            try:
                ok = isinstance(os.fspath(value), str)  # type: ignore[arg-type]
            except TypeError:
                ok = False
            if not ok:
                msg = (
                    f"cache_backend_config[{name!r}] for {backend!r} must be a str or "
                    f"os.PathLike path, got {validate.show(value)}"
                )
                raise ConfigurationError(msg)


def open_backend(backend: str, config: dict[str, Any]) -> ByteStore:
    """The (shared) store for a persistent ``backend`` and its config; used by the CLI too."""
    from pathlib import Path  # noqa: PLC0415 - persistent backends only

    if backend == "disk":
        from opero.core.backends.disk import DiskStore, default_directory, require_disk  # noqa: PLC0415

        require_disk()
        accept_keys(config, {"directory"}, backend)
        directory = Path(config.get("directory") or default_directory("disk")).expanduser()
        identity = str(directory.resolve())
        return open_store("disk", identity, lambda: DiskStore(directory))
    if backend == "sqlite":
        from opero.core.backends.disk import default_directory  # noqa: PLC0415
        from opero.core.backends.sqlite import SqliteStore  # noqa: PLC0415

        accept_keys(config, {"path", "directory"}, backend)
        if "path" in config and "directory" in config:
            msg = "cache_backend_config for 'sqlite': give either path or directory, not both"
            raise ConfigurationError(msg)
        if "path" in config:
            path = Path(config["path"]).expanduser()
        else:
            folder = config.get("directory") or default_directory("sqlite")
            path = Path(folder).expanduser() / "opero-cache.sqlite3"
        return open_store("sqlite", str(path.resolve()), lambda: SqliteStore(path))
    from opero.core.backends.redis import RedisStore  # noqa: PLC0415
    from opero.core.backends.redis_client import (  # noqa: PLC0415
        check_clients,
        redis_settings,
        require_redis,
    )

    require_redis()
    check_clients(config, "cache_backend_config")
    plain = {k: v for k, v in config.items() if k not in ("client", "async_client")}
    settings = redis_settings(plain, "cache_backend_config")
    identity = repr(sorted(settings.items())) + repr(
        (id(config.get("client")), id(config.get("async_client")))
    )
    return open_store("redis", identity, lambda: RedisStore(config))
