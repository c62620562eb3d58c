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

from opero.core.assemble import build_pipeline, validate_settings
from opero.core.breaker import Breaker
from opero.core.retry import WaitStrategy
from opero.core.routing import ErrorFilter
from opero.core.shell import Shell
from opero.decorators.types import (
    BreakerBackend,
    CacheBackend,
    CacheSerializer,
    FallbackStrategy,
    OperoClassMethod,
    OperoDecorator,
    OperoFunction,
    RateLimitBackend,
    RateLimitPer,
    RateLimitScope,
)

__all__ = ["OperoFunction", "opero"]

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")


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
    retry_on: ErrorFilter = Exception,
    jitter: bool = False,
    wait: WaitStrategy | None = None,
    fallback_on: ErrorFilter | None = None,
    retry_if_result: Callable[[Any], Any] | None = None,
    retry_after: Callable[[BaseException], float | None] | None = None,
    max_retry_after: float | None = None,
    attempt_timeout: float | None = None,
    deadline: float | None = None,
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
    rate_limit_per: RateLimitPer = "attempt",
    arg_fallback: str | None = None,
    fallback_delay: float = 0.0,
    fallback_strategy: FallbackStrategy = "ordered",
    candidate_breaker: bool | Breaker | None = None,
    candidate_rate_limit: float | None = None,
    candidate_rate_limit_burst: int = 1,
    circuit_breaker: bool | Breaker | None = None,
    breaker_backend: BreakerBackend = "memory",
    breaker_backend_config: dict[str, Any] | None = None,
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
    retry_on: ErrorFilter = Exception,
    jitter: bool = False,
    wait: WaitStrategy | None = None,
    fallback_on: ErrorFilter | None = None,
    retry_if_result: Callable[[Any], Any] | None = None,
    retry_after: Callable[[BaseException], float | None] | None = None,
    max_retry_after: float | None = None,
    attempt_timeout: float | None = None,
    deadline: float | None = None,
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
    rate_limit_per: RateLimitPer = "attempt",
    arg_fallback: str | None = None,
    fallback_delay: float = 0.0,
    fallback_strategy: FallbackStrategy = "ordered",
    candidate_breaker: bool | Breaker | None = None,
    candidate_rate_limit: float | None = None,
    candidate_rate_limit_burst: int = 1,
    circuit_breaker: bool | Breaker | None = None,
    breaker_backend: BreakerBackend = "memory",
    breaker_backend_config: dict[str, Any] | None = None,
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
        retry_on: Errors worth retrying after the backoff: exception class(es) or a
            predicate ``retry_on(error) -> bool``. An error that neither this nor
            ``fallback_on`` covers propagates at once, unwrapped.
        jitter: Draw each delay uniformly from ``[0, delay]`` to spread out clients.
        wait: A tenacity wait strategy to use instead of the backoff settings.
        fallback_on: Errors that move on at once to the next ``arg_fallback`` candidate
            (classes or a predicate); ``None``: the same as ``retry_on``.
        retry_if_result: ``retry_if_result(result) -> bool`` (async for an ``async def``
            function): true retries the result; exhausted, each rejected result is a
            [`ResultRejected`][opero.ResultRejected] in ``AllFailedError.errors``.
        retry_after: ``retry_after(error) -> seconds | None``: the server's delay, where
            ``error.retry_after`` or a ``Retry-After`` header does not tell it.
        max_retry_after: The longest server delay to wait for (default: ``max_delay``);
            a longer one ends the call at once with ``AllFailedError``.
        attempt_timeout: Seconds each attempt may take; its ``TimeoutError`` is routed
            like any error. A sync attempt then runs on a worker thread.
        deadline: Seconds for the whole call (attempts and every wait); past it,
            [`DeadlineExceeded`][opero.DeadlineExceeded].
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
        rate_limit_per: ``"attempt"``: every call of the function takes a slot, retries
            and fallback candidates included (what the server sees); ``"call"``: one
            slot per decorated call.
        arg_fallback: Parameter holding a list of candidates to try in turn.
        fallback_delay: Seconds to pause between two candidates.
        fallback_strategy: The order one attempt tries the candidates in: ``"ordered"``
            (by index), ``"round_robin"`` (one further along each call) or
            ``"least_loaded"`` (earliest ``candidate_rate_limit`` slot first); healthy
            candidates always before resting or half-open ones. Needs ``arg_fallback``.
        candidate_breaker: A circuit breaker for each candidate (``True``: ``Breaker()``'s
            defaults, or a [`Breaker`][opero.Breaker]): an open one is skipped at no
            cost; all open raises [`CircuitOpenError`][opero.CircuitOpenError].
            Needs ``arg_fallback``.
        candidate_rate_limit: Calls per second each candidate may start (its own limiter,
            so the candidates' rates add up). Needs ``arg_fallback``.
        candidate_rate_limit_burst: Calls each candidate may start at once.
        circuit_breaker: A breaker for the whole function (``True`` or a ``Breaker``),
            inside the rate limit and around the retries: an open one raises
            ``CircuitOpenError`` at once, costing no rate slot and no attempt.
        breaker_backend: Where the key pool's and ``circuit_breaker``'s state lives:
            ``"memory"`` (this process) or ``"redis"`` (every process and host using the
            function, or its ``rate_limit_scope`` group: breakers, rests and candidate
            budgets kept by atomic scripts on the server's clock; while redis is
            unreachable, each process goes on with its own state, never unlimited).
        breaker_backend_config: The redis connection for ``breaker_backend="redis"``, in
            the shapes of ``rate_limit_backend_config`` (which it defaults to).
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
    validate_settings(config)
    return decorate


def _decorate(func: Callable[..., Any], config: Mapping[str, Any]) -> Any:

    pipeline = build_pipeline(func, config)
    shell = Shell(pipeline).call
    wrapper = functools.wraps(func)(shell)
    wrapper.__opero__ = pipeline  # type: ignore[attr-defined]
    # Bound methods of the pipeline, so a pickled function keeps them tied to its own state.
    wrapper.statistics = pipeline.statistics  # type: ignore[attr-defined]
    wrapper.cache_clear = pipeline.cache_clear  # type: ignore[attr-defined]
    return wrapper
