"""``breaker_backend=``: where key pools and ``circuit_breaker=`` keep their state.

``"memory"`` (the default) keeps it in this process (:mod:`opero.core.candidates`);
``"redis"`` keeps every candidate's breaker, rest and budget, and the function's own
breaker, in redis (:mod:`opero.core.backends.redis_breaker`), so every process and
host using the function (or its ``rate_limit_scope`` group) shares them.  The
connection is ``breaker_backend_config=``, in the shapes of
``rate_limit_backend_config=``, which it defaults to.  Checked at decoration time;
nothing connects until the first call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from opero.core import events, forksafe, validate
from opero.exceptions import ConfigurationError

if TYPE_CHECKING:
    from opero.core.backends.redis_breaker import Link
    from opero.core.breaker import Breaker
    from opero.core.breaker_state import BreakerState, OnChange
    from opero.core.candidates import Candidate, Pool, Strategy

__all__ = ["BACKENDS", "check_settings", "shared_circuit", "shared_pool"]

#: The accepted ``breaker_backend`` values; the first is the default.
BACKENDS: Final = ("memory", "redis")
#: The key prefix: ``opero:breaker:<function or group>:<index>`` (``:circuit`` for the
#: function's own breaker).
PREFIX: Final = "opero:breaker:"

_lock = forksafe.lock()
#: One link (client) per name and server in this process; the pools of named groups.
_links: dict[tuple[Any, ...], Link] = {}
_group_pools: dict[tuple[Any, ...], tuple[Pool, tuple[Any, ...]]] = {}


def check_settings(config: Mapping[str, Any], *, shared: bool) -> None:
    """Check ``breaker_backend`` and its connection; ``shared``: a pool or circuit is on."""
    backend = validate.choice("breaker_backend", config["breaker_backend"], BACKENDS)
    given = config["breaker_backend_config"]
    if given is not None and not isinstance(given, dict):
        msg = f"breaker_backend_config must be a dict or None, got a {type(given).__name__}"
        raise ConfigurationError(msg)
    if backend == "memory":
        if given is not None:
            msg = (
                "breaker_backend_config is the redis connection of breaker_backend='redis'; "
                "set breaker_backend='redis' too, or leave it out"
            )
            raise ConfigurationError(msg)
        return
    if not shared:
        msg = (
            "breaker_backend='redis' shares key pools and circuit breakers; set "
            "candidate_breaker=, candidate_rate_limit=, fallback_strategy= or circuit_breaker="
        )
        raise ConfigurationError(msg)
    _connection(config)


def _connection(config: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The checked connection settings and the given client (or None)."""
    what, raw = "breaker_backend_config", config["breaker_backend_config"]
    if raw is None:
        what, raw = "rate_limit_backend_config", config["rate_limit_backend_config"]
    if raw is None:
        msg = (
            "breaker_backend='redis' needs breaker_backend_config= (or a "
            "rate_limit_backend_config= to share): {'host', 'port', 'db', 'password'}, "
            "{'url'} or {'client'}"
        )
        raise ConfigurationError(msg)
    if not isinstance(raw, dict):
        msg = f"{what} must be a dict or None, got a {type(raw).__name__}"
        raise ConfigurationError(msg)
    from opero.core.backends.redis_client import (  # noqa: PLC0415 - optional dependency
        check_clients,
        redis_settings,
        require_redis,
    )

    require_redis()
    settings = dict(raw)
    check_clients(settings, what)
    client = settings.pop("client", None)
    # The breakers ask redis with the sync client: an async caller's round trips are made
    # on the link's lane (opero.core.lane says why), not with an asyncio client.
    settings.pop("async_client", None)
    return redis_settings(settings, what), client


def _link(config: Mapping[str, Any], name: str) -> Link:
    """This process's link for ``name`` on the configured server (made on first use)."""
    from opero.core.backends.redis_breaker import Link  # noqa: PLC0415
    from opero.core.backends.redis_client import make_client  # noqa: PLC0415

    settings, client = _connection(config)
    identity = (name, repr(sorted(settings.items())), id(client))
    with _lock:
        link = _links.get(identity)
        if link is None:
            factory = (
                (lambda: client)
                if client is not None
                else (lambda: make_client(settings, use_async=False))
            )
            link = _links[identity] = Link(name, factory)
        return link


def shared_pool(
    config: Mapping[str, Any],
    name: str,
    strategy: Strategy,
    *,
    breaker: Breaker | None,
    rate: float | None,
    burst: int,
) -> Pool:
    """A key pool whose candidates keep their health in redis (``Pool.local`` False).

    ``name`` is the function's; a named ``rate_limit_scope`` group's functions share one
    pool, keyed by the group, with the settings of the function that created it.
    """
    from opero.core.backends.redis_breaker import RedisCandidate  # noqa: PLC0415
    from opero.core.candidates import Pool  # noqa: PLC0415

    scope = config["rate_limit_scope"]
    group = scope not in ("per_function", "global", "per_args")
    key_name = scope if group else name
    link = _link(config, key_name)

    def make(
        breaker: Breaker | None, rate: float | None, burst: int, on_change: OnChange | None, i: int
    ) -> Candidate:
        key = f"{PREFIX}{key_name}:{i}"
        made = RedisCandidate(
            link, key, breaker, rate=rate, burst=burst, on_change=on_change, index=i
        )
        # The pool reads candidates through the surface they share (see plan: the
        # candidate surface), not through Candidate's class.
        return cast("Candidate", made)

    if not group:
        return Pool(strategy, breaker, rate, burst, name, make=make, local=False)
    identity, wanted = (scope, id(link)), (strategy, breaker, rate, burst)
    with _lock:
        held = _group_pools.get(identity)
        if held is None:
            pool = Pool(strategy, breaker, rate, burst, scope, make=make, local=False)
            _group_pools[identity] = (pool, wanted)
            return pool
        pool, settings = held
        if settings != wanted:
            msg = (
                f"rate_limit_scope {scope!r} already holds a shared key pool with other "
                "candidate_breaker, candidate_rate_limit, candidate_rate_limit_burst or "
                "fallback_strategy settings; every function in a group must give the same"
            )
            raise ConfigurationError(msg)
    return pool


def shared_circuit(config: Mapping[str, Any], name: str, breaker: Breaker) -> BreakerState:
    """The function's own breaker (``circuit_breaker=``) kept in redis."""
    import logging  # noqa: PLC0415

    from opero.core.backends.redis_breaker import RedisCandidate  # noqa: PLC0415

    logger = logging.getLogger("opero")

    def changed(old: str, new: str) -> None:
        logger.info(
            "opero: %s circuit breaker %s -> %s", name, old, new, extra={"opero_function": name}
        )
        if events.on:
            from opero.core.watch import breaker_changed  # noqa: PLC0415 - listeners only

            breaker_changed(name, None, old, new)

    key = f"{PREFIX}{name}:circuit"
    made = RedisCandidate(_link(config, name), key, breaker, on_change=changed)
    return cast("BreakerState", made)  # the pipeline reads it through BreakerState's surface
