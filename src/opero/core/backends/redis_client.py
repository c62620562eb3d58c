"""Redis connections for the cache and the limiter: settings checked, clients built and closed.

One place decides how opero talks to a redis server, so the store and the
shared limiter get the same timeouts, pool sizing and closing rules.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from opero.exceptions import ConfigurationError

__all__ = [
    "POOL_DEFAULTS",
    "REDIS_KEYS",
    "aclose_client",
    "call_bound",
    "check_clients",
    "close_client",
    "close_with_loop",
    "describe",
    "make_client",
    "redis_settings",
    "require_redis",
]

#: How long a call may wait, in seconds, and how many connections a client keeps.
#: The defaults are short: a cache or limiter that cannot answer quickly is worse
#: than none, and opero falls back (cache skipped, limit kept in-process) rather
#: than waits.  ``pool_timeout`` is the wait for a free connection when all
#: ``max_connections`` are busy: a full pool waits, it is not an outage.
POOL_DEFAULTS: dict[str, float | int] = {
    "socket_connect_timeout": 1.0,
    "socket_timeout": 2.0,
    "pool_timeout": 2.0,
    "max_connections": 100,
}

#: The cache_backend_config keys a redis cache accepts.
REDIS_KEYS = frozenset(
    {"host", "port", "db", "password", "url", "client", "async_client", *POOL_DEFAULTS}
)


def require_redis() -> None:
    """Raise ConfigurationError naming the extra if redis-py is missing."""
    try:
        import redis  # noqa: F401, PLC0415
    except ImportError as exc:
        msg = 'cache_backend="redis" needs redis-py: pip install "opero[redis]"'
        raise ConfigurationError(msg) from exc


def redis_settings(config: dict[str, Any], what: str) -> dict[str, Any]:
    """Validated connection settings; ``what`` names the parameter in messages."""
    from opero.core import validate  # noqa: PLC0415

    unknown = set(config) - REDIS_KEYS
    if unknown:
        names = ", ".join(sorted(map(validate.show, unknown)))
        msg = f"{what} got unknown keys {names}; accepted: {', '.join(sorted(REDIS_KEYS))}"
        raise ConfigurationError(msg)
    if "url" in config and {"host", "port", "db", "password"} & set(config):
        msg = f"{what}: give either url or host/port/db/password, not both"
        raise ConfigurationError(msg)
    url = config.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(_SCHEMES)):
        # Never the URL itself in the message: it may hold a password.
        msg = f"{what}['url'] must be a str starting with {', '.join(_SCHEMES)}"
        raise ConfigurationError(msg)
    if url is not None:
        try:
            describe({"url": url})
        except ValueError:
            msg = f"{what}['url'] is not a valid URL: its host or port cannot be read"
            raise ConfigurationError(msg) from None
    host = config.get("host", "localhost")
    if not isinstance(host, str) or not host:
        msg = f"{what}['host'] must be a non-empty str, got {validate.show(host)}"
        raise ConfigurationError(msg)
    password = config.get("password")
    if password is not None and not isinstance(password, (str, bytes)):
        msg = f"{what}['password'] must be a str, bytes or None, got a {type(password).__name__}"
        raise ConfigurationError(msg)
    return _pool_settings(config, what) | {
        "url": url,
        "host": host,
        "port": validate.integer(
            f"{what}['port']", _digits(config.get("port", 6379)), minimum=0, maximum=65535
        ),
        "db": validate.integer(f"{what}['db']", _digits(config.get("db", 0)), minimum=0),
        "password": password,
    }


#: The URL schemes redis-py connects to.
_SCHEMES = ("redis://", "rediss://", "unix://")


def _digits(value: object) -> object:
    """A port or db given as a decimal str (read from the environment) as an int."""
    if isinstance(value, str) and value.isdecimal() and len(value) <= 10:
        return int(value)
    return value


def check_clients(config: dict[str, Any], what: str) -> None:
    """``client`` and ``async_client``, if given, must be redis-py clients (sync, asyncio)."""
    for key in ("client", "async_client"):
        value = config.get(key)
        if value is not None and not callable(getattr(value, "execute_command", None)):
            kind = "redis.Redis" if key == "client" else "redis.asyncio.Redis"
            msg = f"{what}[{key!r}] must be a {kind} client, got a {type(value).__name__}"
            raise ConfigurationError(msg)


def _pool_settings(config: dict[str, Any], what: str) -> dict[str, Any]:
    """The timeouts and pool size in ``config``, checked, with the defaults filled in."""
    from opero.core import validate  # noqa: PLC0415

    settings: dict[str, Any] = {}
    for key, default in POOL_DEFAULTS.items():
        value = config.get(key, default)
        name = f"{what}[{key!r}]"
        if key == "max_connections":
            settings[key] = validate.integer(name, value, maximum=2**31)
        else:
            settings[key] = validate.number(name, value, exclusive=True)
    return settings


def call_bound(settings: dict[str, Any]) -> float:
    """The longest one command can take with ``settings``: a free connection, connecting,
    and two replies (the handshake's and the command's), in seconds."""
    waits = settings["pool_timeout"] + settings["socket_connect_timeout"]
    return float(waits + 2 * settings["socket_timeout"])


def describe(settings: dict[str, Any]) -> str:
    """Where the server is, without credentials."""
    if settings["url"]:
        from urllib.parse import urlsplit  # noqa: PLC0415

        parts = urlsplit(settings["url"])
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path or ''}"
    return f"redis://{settings['host']}:{settings['port']}/{settings['db']}"


def make_client(settings: dict[str, Any], *, use_async: bool) -> Any:
    """A redis-py client (sync, or asyncio) for validated ``settings``.

    Its pool is a ``BlockingConnectionPool``: beyond ``max_connections``
    concurrent commands a caller waits up to ``pool_timeout`` for a free
    connection.  A plain pool fails at once instead (redis-py 8 caps it at 100
    connections with ``MaxConnectionsError``), which would read as an outage
    under a burst of concurrent calls.  Close it with :func:`close_client`.
    """
    import redis  # noqa: PLC0415
    import redis.asyncio  # noqa: PLC0415
    import redis.asyncio.retry  # noqa: PLC0415
    import redis.retry  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415

    cls: Any = redis.asyncio.Redis if use_async else redis.Redis
    pool_cls: Any = (
        redis.asyncio.BlockingConnectionPool if use_async else redis.BlockingConnectionPool
    )
    # redis-py retries a refused connection ten times with backoff by default
    # (seconds per call while the server is down); opero has its own fallback.
    retry: Any = (redis.asyncio.retry.Retry if use_async else redis.retry.Retry)(NoBackoff(), 0)
    options: dict[str, Any] = {
        "max_connections": settings["max_connections"],
        "timeout": settings["pool_timeout"],
        "socket_connect_timeout": settings["socket_connect_timeout"],
        "socket_timeout": settings["socket_timeout"],
        "retry": retry,
    }
    if settings["url"]:
        pool = pool_cls.from_url(settings["url"], **options)
    else:
        pool = pool_cls(
            host=settings["host"],
            port=settings["port"],
            db=settings["db"],
            password=settings["password"],
            **options,
        )
    # With a pool given, the client takes its settings (retry included) from the pool.
    return cls(connection_pool=pool)


def close_client(client: Any) -> None:
    """Close a sync client and the connections of its pool (redis-py 5's ``close()``
    leaves a given pool's connections open)."""
    client.close()
    client.connection_pool.disconnect()


async def aclose_client(client: Any) -> None:
    """Close an asyncio client and its pool's connections (``aclose`` is redis-py >= 5.0.1)."""
    close = getattr(client, "aclose", None) or client.close
    await close()
    await client.connection_pool.disconnect()


async def close_with_loop(client: Any) -> AsyncGenerator[None, None]:
    """Close ``client`` when its loop shuts down.

    Started (``await gen.asend(None)``) on a loop, the loop tracks this
    generator, and ``asyncio.run`` closes such generators while the loop can
    still do I/O, so the client's connections close cleanly with their loop.
    """
    try:
        yield
    finally:
        await aclose_client(client)
