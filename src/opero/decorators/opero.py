"""``@opero``: cache, rate limit, retry with backoff and parameter fallback in one decorator.

The decorator validates every setting and builds the policies once, at
decoration time, then hands them to the sync or async shell, chosen by one
``inspect.iscoroutinefunction`` check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Hashable, Mapping
from types import MappingProxyType
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from opero.core import validate
from opero.core.cache import check_settings as check_cache_settings
from opero.core.cache import key_function, make_cache
from opero.core.callbacks import Callbacks
from opero.core.fallback import FallbackPolicy
from opero.core.fallback import check_settings as check_fallback_settings
from opero.core.keys import Keys, ignored_names
from opero.core.limiters import limiter_for_scope
from opero.core.pipeline import Pipeline
from opero.core.rate_limit import check_settings as check_rate_settings
from opero.core.retry import RetryPolicy, WaitStrategy, normalize_retry_on
from opero.core.shell import Shell
from opero.decorators.types import (
    CacheBackend,
    CacheSerializer,
    OperoClassMethod,
    OperoDecorator,
    OperoFunction,
    RateLimitBackend,
    RateLimitScope,
)
from opero.exceptions import ConfigurationError

__all__ = ["OperoFunction", "opero"]

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")

#: The backoff settings that a tenacity ``wait=`` strategy replaces, with their defaults.
_BACKOFF_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"backoff_factor": 1.5, "min_delay": 0.1, "max_delay": 30.0, "jitter": False}
)
#: The event callbacks (their call forms are checked by ``Callbacks.build``).
_CALLBACKS = ("on_retry", "on_success", "on_failure", "on_cache_hit")


# A function whose first parameter is a class (``cls``): bound like @classmethod (see types.py).
@overload
def opero(func: Callable[Concatenate[type[C], P], R], /) -> OperoClassMethod[C, P, R]: ...


@overload
def opero(func: Callable[P, R], /) -> OperoFunction[P, R]: ...


@overload
def opero(
    *,
    retries: int = 3,
    backoff_factor: float = 1.5,
    min_delay: float = 0.1,
    max_delay: float = 30.0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    jitter: bool = False,
    wait: WaitStrategy | None = None,
    cache: bool = False,
    cache_ttl: float | None = None,
    cache_backend: CacheBackend = "memory",
    cache_backend_config: dict[str, Any] | None = None,
    cache_key: Callable[..., Hashable] | None = None,
    cache_ignore: str | Collection[str] = (),
    cache_namespace: str = "opero",
    cache_maxsize: int | None = 4096,
    cache_serializer: CacheSerializer = "pickle",
    cache_secret: str | bytes | None = None,
    rate_limit: float | None = None,
    rate_limit_scope: RateLimitScope = "per_function",
    rate_limit_burst: int = 1,
    rate_limit_backend: RateLimitBackend = "memory",
    rate_limit_backend_config: dict[str, Any] | None = None,
    arg_fallback: str | None = None,
    fallback_delay: float = 0.0,
    on_retry: Callable[..., Any] | None = None,
    on_success: Callable[..., Any] | None = None,
    on_failure: Callable[..., Any] | None = None,
    on_cache_hit: Callable[..., Any] | None = None,
) -> OperoDecorator: ...


def opero(
    func: Callable[..., Any] | None = None,
    /,
    *,
    retries: int = 3,
    backoff_factor: float = 1.5,
    min_delay: float = 0.1,
    max_delay: float = 30.0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    jitter: bool = False,
    wait: WaitStrategy | None = None,
    cache: bool = False,
    cache_ttl: float | None = None,
    cache_backend: CacheBackend = "memory",
    cache_backend_config: dict[str, Any] | None = None,
    cache_key: Callable[..., Hashable] | None = None,
    cache_ignore: str | Collection[str] = (),
    cache_namespace: str = "opero",
    cache_maxsize: int | None = 4096,
    cache_serializer: CacheSerializer = "pickle",
    cache_secret: str | bytes | None = None,
    rate_limit: float | None = None,
    rate_limit_scope: RateLimitScope = "per_function",
    rate_limit_burst: int = 1,
    rate_limit_backend: RateLimitBackend = "memory",
    rate_limit_backend_config: dict[str, Any] | None = None,
    arg_fallback: str | None = None,
    fallback_delay: float = 0.0,
    on_retry: Callable[..., Any] | None = None,
    on_success: Callable[..., Any] | None = None,
    on_failure: Callable[..., Any] | None = None,
    on_cache_hit: Callable[..., Any] | None = None,
) -> Any:
    """Make ``func`` resilient: cache → rate limit → retry (backoff) → fallback → ``func``.

    Works on sync and ``async def`` functions alike, with or without
    arguments (``@opero`` or ``@opero(...)``).  Every setting is checked here;
    a bad one raises [`ConfigurationError`][opero.ConfigurationError] naming the parameter.

    Args:
        retries: Retry attempts after the first (``retries=3``: up to 4 attempts).
        backoff_factor: Growth of the delay between attempts (>= 1).
        min_delay: Delay before the first retry, in seconds.
        max_delay: Cap on any delay between attempts, in seconds.
        retry_on: Exception class(es) worth retrying; anything else propagates at once.
        jitter: Draw each delay uniformly from ``[0, delay]`` to spread out clients.
        wait: A tenacity wait strategy to use instead of the backoff settings.
        cache: Cache results (``None`` included; exceptions never).
        cache_ttl: Seconds a cached result lives; ``None`` for no expiry.
        cache_backend: Where results live: ``"memory"``, ``"disk"``, ``"sqlite"`` or ``"redis"``.
        cache_backend_config: Backend settings: ``{"directory"}`` (disk, sqlite),
            ``{"path"}`` (sqlite), ``{"host", "port", "db", "password"}`` or ``{"url"}``
            or ``{"client"}`` (redis).
        cache_key: ``cache_key(func, *args, **kwargs)`` returning the key to use.
        cache_ignore: Parameters left out of the cache key, by name (checked against the
            signature): a ``request``, a session, a client. ``("self",)`` shares one cache
            among all instances of a method's class. Not with ``cache_key``.
        cache_namespace: A name under which ``clear_cache(namespace=...)`` finds the entries.
        cache_maxsize: Most entries kept in memory (least recently used go first).
        cache_serializer: ``"pickle"`` or ``"json"`` (readable by other programs) for
            disk, sqlite and redis.
        cache_secret: Sign stored entries with HMAC; entries that fail the check are misses.
        rate_limit: Most calls per second that may start (0.5 = one every 2 s).
        rate_limit_scope: ``"per_function"``, ``"global"``, ``"per_args"`` or a group name.
        rate_limit_burst: Calls that may start at once before spacing applies.
        rate_limit_backend: ``"memory"`` (this process) or ``"redis"`` (every process and
            host using the same scope name).
        rate_limit_backend_config: Redis connection settings, as for ``cache_backend_config``.
        arg_fallback: Parameter holding a list of candidates to try in turn.
        fallback_delay: Seconds to pause between two candidates.
        on_retry: ``on_retry(error, attempt)`` before each retry (or ``on_retry()``).
        on_success: ``on_success(result)`` after a successful call (or no arguments).
        on_failure: ``on_failure(error)`` when the call finally fails (or no arguments).
        on_cache_hit: ``on_cache_hit()`` when a result comes from the cache.

    Examples:
        >>> from opero import opero
        >>> @opero(retries=2, arg_fallback="key")
        ... def fetch(item: str, key: list[str] = ["primary", "backup"]) -> str:
        ...     if key[0] == "primary":
        ...         raise ConnectionError("primary is down")
        ...     return f"{item} via {key[0]}"
        >>> fetch("report")
        'report via backup'
    """
    settings = dict(locals())
    del settings["func"]
    config = MappingProxyType(settings)

    def decorate(target: Callable[..., Any]) -> Any:
        return _decorate(target, config)

    if func is not None:
        return decorate(func)
    _validate_early(config)
    return decorate


def _validate_early(config: Mapping[str, Any]) -> RetryPolicy:
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
    return _retry_policy(config)


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
    retry = _validate_early(config)
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
    return Pipeline(
        func=func,
        name=f"{module}.{qualname}",
        retry=retry,
        cache=cache,
        limiter=limiter,
        fallback=fallback,
        callbacks=callbacks,
        config=config if isinstance(config, MappingProxyType) else MappingProxyType(dict(config)),
        is_async=is_async,
        factory=build_pipeline,
    )


def _decorate(func: Callable[..., Any], config: Mapping[str, Any]) -> Any:

    pipeline = build_pipeline(func, config)
    shell = Shell(pipeline).call
    wrapper = functools.wraps(func)(shell)
    wrapper.__opero__ = pipeline  # type: ignore[attr-defined]
    # Bound methods of the pipeline, so a pickled function keeps them tied to its own state.
    wrapper.statistics = pipeline.statistics  # type: ignore[attr-defined]
    wrapper.cache_clear = pipeline.cache_clear  # type: ignore[attr-defined]
    return wrapper


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
