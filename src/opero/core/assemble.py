"""Settings to a :class:`Pipeline`: every check and every policy built once, at decoration.

It lives in ``core`` because a process worker rebuilds its pipeline from the same
settings (``Pipeline.factory``), and worker code must not reach back into ``decorators/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from opero.core import events, validate
from opero.core.breaker import Breaker
from opero.core.breaker_backend import check_settings as check_breaker_backend
from opero.core.breaker_backend import shared_circuit, shared_pool
from opero.core.breaker_state import BreakerState
from opero.core.cache import check_settings as check_cache_settings
from opero.core.cache import key_function, make_cache
from opero.core.callbacks import Callbacks
from opero.core.candidates import Pool, pool_for_scope
from opero.core.candidates import check_settings as check_pool_settings
from opero.core.fallback import FallbackPolicy
from opero.core.fallback import check_settings as check_fallback_settings
from opero.core.keys import Keys, ignored_names
from opero.core.limiters import limiter_for_scope
from opero.core.pipeline import Pipeline
from opero.core.rate_limit import check_settings as check_rate_settings
from opero.core.retry import RetryPolicy, normalize_retry_on
from opero.core.routing import Routing, check_result_check, error_filter
from opero.exceptions import ConfigurationError

__all__ = ["build_pipeline", "validate_settings"]

logger = logging.getLogger("opero")

#: The backoff settings that a tenacity ``wait=`` strategy replaces, with their defaults.
_BACKOFF_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"backoff_factor": 1.5, "min_delay": 0.1, "max_delay": 30.0, "jitter": False}
)
#: The event callbacks (their call forms are checked by ``Callbacks.build``).
_CALLBACKS = ("on_retry", "on_success", "on_failure", "on_cache_hit")


def validate_settings(config: Mapping[str, Any]) -> RetryPolicy:
    """Checks that need no function, so ``opero(retries=-1)`` fails before it is applied.

    Every setting is checked by value, also those of a layer that is off
    (``cache_ttl=-1`` without ``cache=True``): a bad value is a mistake either way.
    """
    validate.flag("cache", config["cache"])
    check_cache_settings(**_cache_settings(config))
    check_rate_settings(
        config["rate_limit"],
        config["rate_limit_burst"],
        config["rate_limit_scope"],
        config["rate_limit_backend"],
        config["rate_limit_backend_config"],
    )
    check_fallback_settings(config["arg_fallback"], config["fallback_delay"])
    for name in _CALLBACKS:
        validate.function(name, config[name], f"{name}(...)")
    _check_engine_settings(config, is_async=None)
    per_candidate, whole = _pool_settings(config)
    pooled = per_candidate is not None or config["candidate_rate_limit"] is not None
    pooled = pooled or config["fallback_strategy"] != "ordered"
    check_breaker_backend(config, shared=pooled or whole is not None)
    return _retry_policy(config)


def _pool_settings(config: Mapping[str, Any]) -> tuple[Breaker | None, Breaker | None]:
    """The key-pool settings, checked: ``(candidate_breaker, circuit_breaker)`` (None: off)."""
    return check_pool_settings(
        candidate_breaker=config["candidate_breaker"],
        circuit_breaker=config["circuit_breaker"],
        fallback_strategy=config["fallback_strategy"],
        candidate_rate_limit=config["candidate_rate_limit"],
        candidate_rate_limit_burst=config["candidate_rate_limit_burst"],
        arg_fallback=config["arg_fallback"],
    )


def _circuit(config: Mapping[str, Any], name: str) -> BreakerState | None:
    """The whole function's breaker (``circuit_breaker=``), logging each change by name."""
    _, breaker = _pool_settings(config)
    if breaker is None:
        return None
    if config["breaker_backend"] == "redis":
        return shared_circuit(config, name, breaker)

    def changed(old: str, new: str) -> None:
        logger.info(
            "opero: %s circuit breaker %s -> %s", name, old, new, extra={"opero_function": name}
        )
        if events.on:
            from opero.core.watch import breaker_changed  # noqa: PLC0415 - listeners only

            breaker_changed(name, None, old, new)

    return BreakerState(breaker, changed)


def _pool(config: Mapping[str, Any], name: str) -> Pool | None:
    """One function's key pool, or None when no key-pool setting is on (the plain path)."""
    breaker, _ = _pool_settings(config)
    rate, strategy = config["candidate_rate_limit"], config["fallback_strategy"]
    if breaker is None and rate is None and strategy == "ordered":
        return None
    if config["breaker_backend"] == "redis":
        burst = config["candidate_rate_limit_burst"]
        return shared_pool(config, name, strategy, breaker=breaker, rate=rate, burst=burst)
    scope = config["rate_limit_scope"]
    if scope in ("per_function", "global", "per_args"):
        return Pool(strategy, breaker, rate, config["candidate_rate_limit_burst"], name)
    return pool_for_scope(scope, strategy, breaker, rate, config["candidate_rate_limit_burst"])


def _check_engine_settings(config: Mapping[str, Any], *, is_async: bool | None) -> None:
    """Check the routing, result, time and rate-slot settings (fallback_on to rate_limit_per)."""
    if config["fallback_on"] is not None:
        error_filter("fallback_on", config["fallback_on"])
        if config["arg_fallback"] is None:
            msg = (
                "fallback_on routes errors to the next arg_fallback candidate; "
                "set arg_fallback too, or use retry_on alone"
            )
            raise ConfigurationError(msg)
    check_result_check(config["retry_if_result"], is_async=is_async)
    for name in ("deadline", "attempt_timeout"):
        if config[name] is not None:
            validate.number(name, config[name], exclusive=True, hint=", or None")
    validate.choice("rate_limit_per", config["rate_limit_per"], ("attempt", "call"))


def _retry_policy(config: Mapping[str, Any]) -> RetryPolicy:
    if config["wait"] is not None:
        changed = [name for name, default in _BACKOFF_DEFAULTS.items() if config[name] != default]
        if changed:
            msg = (
                f"wait= replaces the built-in backoff; do not also set {', '.join(changed)} "
                "(put them in the tenacity strategy instead)"
            )
            raise ConfigurationError(msg)
    return RetryPolicy(
        retries=config["retries"],
        retry_on=normalize_retry_on(config["retry_on"]),
        backoff_factor=config["backoff_factor"],
        min_delay=config["min_delay"],
        max_delay=config["max_delay"],
        jitter=config["jitter"],
        wait=config["wait"],
        retry_after=config["retry_after"],
        max_retry_after=config["max_retry_after"],
    )


def build_pipeline(func: Callable[..., Any], config: Mapping[str, Any]) -> Pipeline:
    """Validate ``config`` against ``func`` and build its pipeline (also used by ``@opmap``)."""
    import inspect  # noqa: PLC0415 - decoration time only; keeps `import opero` light

    if not callable(func):
        msg = f"@opero decorates a function, got {func!r}"
        raise ConfigurationError(msg)
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        msg = (
            f"@opero cannot decorate the generator function {func.__qualname__!r}: "
            "a generator returns before it runs, so there is nothing to retry or cache"
        )
        raise ConfigurationError(msg)
    is_async = inspect.iscoroutinefunction(func)
    retry = validate_settings(config)
    _check_engine_settings(config, is_async=is_async)
    cache = None
    if config["cache_ignore"] and not config["cache"]:
        Keys(func, ignored_names(config["cache_ignore"]))  # names checked with the cache off too
    if config["cache"]:
        cache = make_cache(func, **_cache_settings(config))
    limiter = None
    if config["rate_limit"] is not None:
        limiter = limiter_for_scope(
            config["rate_limit_scope"],
            config["rate_limit"],
            config["rate_limit_burst"],
            key_function(func),
            function=f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}",
            backend=config["rate_limit_backend"],
            backend_config=config["rate_limit_backend_config"],
        )
    fallback = None
    if config["arg_fallback"] is not None:
        fallback = FallbackPolicy.for_function(
            func, config["arg_fallback"], config["fallback_delay"]
        )
    callbacks = Callbacks.build(
        for_async=is_async,
        on_retry=config["on_retry"],
        on_success=config["on_success"],
        on_failure=config["on_failure"],
        on_cache_hit=config["on_cache_hit"],
    )
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    name = f"{module}.{qualname}"
    return Pipeline(
        func=func,
        name=name,
        pool=_pool(config, name),
        circuit=_circuit(config, name),
        retry=retry,
        cache=cache,
        limiter=limiter,
        fallback=fallback,
        callbacks=callbacks,
        config=config if isinstance(config, MappingProxyType) else MappingProxyType(dict(config)),
        is_async=is_async,
        factory=build_pipeline,
        **_engine_parts(config, retry),
    )


def _engine_parts(config: Mapping[str, Any], retry: RetryPolicy) -> dict[str, Any]:
    """The pipeline's routing, time bounds and rate-slot rule, from their settings."""
    routing = Routing(
        retry_on=retry.retry_on,
        fallback_on=config["fallback_on"],
        result_check=config["retry_if_result"],
    )
    return {
        "routing": routing,
        "deadline": config["deadline"],
        "attempt_timeout": config["attempt_timeout"],
        "per_attempt": config["rate_limit_per"] == "attempt",
    }


#: The cache settings, by the names ``make_cache`` and ``check_settings`` take them.
_CACHE_SETTINGS = (
    "backend",
    "ttl",
    "namespace",
    "key",
    "maxsize",
    "backend_config",
    "serializer",
    "secret",
    "ignore",
)


def _cache_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    return {name: config[f"cache_{name}"] for name in _CACHE_SETTINGS}
