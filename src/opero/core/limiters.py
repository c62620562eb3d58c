"""Which limiter a decorated function gets: its own, one per argument set, or a shared group.

The limiters themselves are policies with no I/O of their own
(:mod:`opero.core.rate_limit`) or backends (:mod:`opero.core.backends.redis_limiter`);
this module sits above both and keeps the registries that make every function
naming one group share one limiter in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from opero.core import forksafe
from opero.core.rate_limit import Limiter, PerArgsLimiter, RateLimit, check_settings
from opero.exceptions import ConfigurationError

__all__ = ["limiter_for_scope"]

_groups: dict[str, Limiter] = {}
_groups_lock = forksafe.lock()
#: Shared (redis) limiters of this process, by scope name and server.
_shared_groups: dict[tuple[Any, ...], RateLimit] = {}


def limiter_for_scope(
    scope: str,
    rate: float,
    burst: int,
    keys: Callable[[tuple[Any, ...], dict[str, Any]], Hashable],
    *,
    function: str = "",
    backend: str = "memory",
    backend_config: dict[str, Any] | None = None,
) -> RateLimit:
    """Build the rate-limit layer for one decorated function.

    ``"per_function"`` gets a limiter of its own; ``"per_args"`` one per
    argument set; ``"global"`` and any other string share one limiter per name
    across every function that names it.  A group keeps the rate of the
    function that created it; asking for another rate is a ConfigurationError.
    """
    check_settings(rate, burst, scope, backend, backend_config)
    if backend != "memory":
        return _shared_limiter(
            scope=scope,
            rate=rate,
            burst=burst,
            function=function,
            backend=backend,
            backend_config=backend_config,
        )
    if scope == "per_function":
        return Limiter(rate, burst)
    if scope == "per_args":
        return PerArgsLimiter(rate, burst, keys)
    with _groups_lock:
        limiter = _groups.get(scope)
        if limiter is None:
            limiter = _groups[scope] = Limiter(rate, burst)
        else:
            _check_same_rate(scope, limiter, rate, burst)
    return limiter


def _check_same_rate(scope: str, limiter: RateLimit, rate: float, burst: int) -> None:
    """A group keeps the rate of the function that created it."""
    if limiter.rate != float(rate) or limiter.burst != burst:
        msg = (
            f"rate_limit_scope {scope!r} already exists with rate_limit={limiter.rate} "
            f"and rate_limit_burst={limiter.burst}; every function in a group must give "
            f"the same values (got rate_limit={rate}, rate_limit_burst={burst})"
        )
        raise ConfigurationError(msg)


def _shared_limiter(
    *,
    scope: str,
    rate: float,
    burst: int,
    function: str,
    backend: str,
    backend_config: dict[str, Any] | None,
) -> RateLimit:
    """A limiter whose schedule lives on a redis server, shared by every process using ``scope``."""
    if scope == "per_args":
        msg = (
            "rate_limit_scope='per_args' is in-process only; with rate_limit_backend='redis' "
            "use 'per_function', 'global' or a group name"
        )
        raise ConfigurationError(msg)
    from opero.core.backends.redis_client import (  # noqa: PLC0415 - optional dependency
        check_clients,
        make_client,
        redis_settings,
        require_redis,
    )
    from opero.core.backends.redis_limiter import RedisLimiter  # noqa: PLC0415

    require_redis()
    config = dict(backend_config or {})
    check_clients(config, "rate_limit_backend_config")
    client = config.pop("client", None)
    async_client = config.pop("async_client", None)
    settings = redis_settings(config, "rate_limit_backend_config")
    name = function if scope == "per_function" else scope
    # Functions of this process that name one group share one limiter (and its clients).
    identity = (name, repr(sorted(settings.items())), id(client), id(async_client))
    with _groups_lock:
        limiter = _shared_groups.get(identity)
        if limiter is not None:
            _check_same_rate(scope, limiter, rate, burst)
            return limiter
        limiter = _shared_groups[identity] = RedisLimiter(
            rate,
            burst,
            name,
            client_factory=(lambda: client)
            if client is not None
            else (lambda: make_client(settings, use_async=False)),
            async_client_factory=(lambda: async_client)
            if async_client is not None
            else (lambda: make_client(settings, use_async=True)),
        )
        return limiter
