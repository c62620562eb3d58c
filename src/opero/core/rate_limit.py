"""Rate limiting: calls spaced evenly, with an optional burst.

The limiter is a GCRA (generic cell rate algorithm, the token bucket written
as one timestamp): each call reserves the next free start time under a lock
and is told how long to wait for it.  It never sleeps itself, so the same
limiter works from threads, from ``asyncio.gather`` and from several event
loops over its lifetime: the sync shell sleeps with ``time.sleep``, the async
shell with ``asyncio.sleep``.  Because reservations are absolute times,
oversleeping by a scheduler tick never accumulates into drift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Final, final

from opero.core import forksafe, validate
from opero.exceptions import ConfigurationError

__all__ = [
    "SCOPES",
    "Limiter",
    "PerArgsLimiter",
    "RateLimit",
    "check_settings",
    "limiter_for_scope",
]

#: The scope kinds with a meaning of their own; any other string names a shared group.
SCOPES: Final = ("per_function", "global", "per_args")

#: Idle per-argument limiters are pruned once there are more than this many.
_PRUNE_AT: Final = 1024


def _check_rate(rate: float, burst: int) -> None:
    # The slowest rate still spaces calls by a wait the platform can sleep.
    validate.number(
        "rate_limit",
        rate,
        minimum=1 / validate.MAX_SECONDS,
        maximum=math.inf,
        kind="a finite number of calls per second",
        hint=" (0.5 = one call every 2 s)",
    )
    validate.integer("rate_limit_burst", burst)


def check_settings(
    rate: float | None, burst: int, scope: str, backend: str, backend_config: object
) -> None:
    """Check the rate-limit settings by value alone (also when ``rate_limit`` is None)."""
    if rate is not None:
        _check_rate(rate, burst)
    else:
        validate.integer("rate_limit_burst", burst)
    if not isinstance(scope, str) or not scope.strip():
        msg = (
            "rate_limit_scope must be 'per_function', 'global', 'per_args' or a group name, "
            f"got {validate.show(scope)}"
        )
        raise ConfigurationError(msg)
    if scope.startswith("per_") and scope not in SCOPES:
        msg = (
            f"unknown rate_limit_scope {validate.show(scope)}: the scope kinds are "
            "'per_function', 'global' and 'per_args' (any other name is a shared group)"
        )
        raise ConfigurationError(msg)
    validate.choice("rate_limit_backend", backend, ("memory", "redis"))
    if backend_config is not None and not isinstance(backend_config, dict):
        msg = f"rate_limit_backend_config must be a dict, got {type(backend_config).__name__}"
        raise ConfigurationError(msg)


@final
class Limiter:
    """Even spacing at ``rate`` calls per second, letting ``burst`` calls start at once.

    Examples:
        >>> limiter = Limiter(rate=10)
        >>> limiter.reserve(now=0.0), limiter.reserve(now=0.0), limiter.reserve(now=0.25)
        (0.0, 0.1, 0.0)
    """

    __slots__ = ("_lock", "_tat", "burst", "interval", "rate")

    def __init__(self, rate: float, burst: int = 1) -> None:
        _check_rate(rate, burst)
        self.rate = float(rate)
        self.burst = burst
        #: Seconds between two starts.
        self.interval = 1.0 / self.rate
        self._lock = forksafe.lock()
        self._tat = -math.inf  # theoretical arrival time of the next call

    def reserve(self, now: float) -> float:
        """Claim the next start time; return the seconds to wait for it (0 if none)."""
        tolerance = (self.burst - 1) * self.interval
        with self._lock:
            tat = max(self._tat, now)
            start = max(now, tat - tolerance)
            self._tat = tat + self.interval
        return start - now

    def reserve_for(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> float:
        """Same as :meth:`reserve`: a shared limiter ignores the call's arguments."""
        return self.reserve(now)

    def idle(self, now: float) -> bool:
        """True when a fresh limiter would behave the same (nothing reserved ahead)."""
        return self._tat <= now


@final
class PerArgsLimiter:
    """One :class:`Limiter` per distinct argument set (``rate_limit_scope="per_args"``)."""

    __slots__ = ("_keys", "_limiters", "_lock", "_prune_at", "burst", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        keys: Callable[[tuple[Any, ...], dict[str, Any]], Hashable],
    ) -> None:
        _check_rate(rate, burst)
        self.rate = float(rate)
        self.burst = burst
        self._keys = keys
        self._limiters: dict[Hashable, Limiter] = {}
        self._lock = forksafe.lock()
        self._prune_at = _PRUNE_AT

    def reserve_for(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> float:
        """Reserve a start on the limiter of this argument set."""
        from opero.core.cache import freeze  # noqa: PLC0415 - cache imports this module

        key = freeze(self._keys(args, kwargs))
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                if len(self._limiters) >= self._prune_at:
                    # An idle limiter equals a fresh one, so dropping it loses nothing.
                    # The next prune waits until the table doubles: amortised O(1).
                    self._limiters = {k: v for k, v in self._limiters.items() if not v.idle(now)}
                    self._prune_at = max(_PRUNE_AT, 2 * len(self._limiters))
                limiter = self._limiters[key] = Limiter(self.rate, self.burst)
        return limiter.reserve(now)


#: Either kind of limiter; both answer ``reserve_for(args, kwargs, now)``.
RateLimit = Limiter | PerArgsLimiter


_groups: dict[str, Limiter] = {}
_groups_lock = forksafe.lock()
#: Shared (redis) limiters of this process, by scope name and server.
_shared_groups: dict[tuple[Any, ...], Any] = {}


def limiter_for_scope(
    scope: str,
    rate: float,
    burst: int,
    keys: Callable[[tuple[Any, ...], dict[str, Any]], Hashable],
    *,
    function: str = "",
    backend: str = "memory",
    backend_config: dict[str, Any] | None = None,
) -> RateLimit | Any:
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
        elif limiter.rate != float(rate) or limiter.burst != burst:
            msg = (
                f"rate_limit_scope {scope!r} already exists with rate_limit={limiter.rate} "
                f"and rate_limit_burst={limiter.burst}; every function in a group must give "
                f"the same values (got rate_limit={rate}, rate_limit_burst={burst})"
            )
            raise ConfigurationError(msg)
    return limiter


def _shared_limiter(
    *,
    scope: str,
    rate: float,
    burst: int,
    function: str,
    backend: str,
    backend_config: dict[str, Any] | None,
) -> Any:
    """A limiter whose schedule lives on a redis server, shared by every process using ``scope``."""
    if scope == "per_args":
        msg = (
            "rate_limit_scope='per_args' is in-process only; with rate_limit_backend='redis' "
            "use 'per_function', 'global' or a group name"
        )
        raise ConfigurationError(msg)
    from opero.core.backends.redis import (  # noqa: PLC0415 - optional dependency
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
            if limiter.rate != float(rate) or limiter.burst != burst:
                msg = (
                    f"rate_limit_scope {scope!r} already exists with rate_limit={limiter.rate} "
                    f"and rate_limit_burst={limiter.burst}; every function in a group must "
                    f"give the same values (got rate_limit={rate}, rate_limit_burst={burst})"
                )
                raise ConfigurationError(msg)
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
