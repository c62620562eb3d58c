"""``OperoSettings``: the ``@opero`` settings that ``@opmap(...)`` also takes, as one TypedDict.

Kept apart from :mod:`opero.decorators.types` (which re-exports it) so each module stays
short; the names and types are ``opero``'s parameters (a test keeps them equal).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from opero.core.breaker import Breaker
    from opero.core.retry import WaitStrategy
    from opero.core.routing import ErrorFilter
    from opero.decorators.types import (
        BreakerBackend,
        CacheBackend,
        CacheSerializer,
        FallbackStrategy,
        RateLimitBackend,
        RateLimitPer,
        RateLimitScope,
    )

__all__ = ["OperoSettings"]


class OperoSettings(TypedDict, total=False):
    """The ``@opero`` settings that ``@opmap(...)`` also takes, applied to each item.

    The same names and types as ``opero``'s parameters (a test keeps them equal).
    """

    retries: int
    backoff_factor: float
    min_delay: float
    max_delay: float
    retry_on: ErrorFilter
    jitter: bool
    wait: WaitStrategy | None
    fallback_on: ErrorFilter | None
    retry_if_result: Callable[[Any], Any] | None
    retry_after: Callable[[BaseException], float | None] | None
    max_retry_after: float | None
    attempt_timeout: float | None
    deadline: float | None
    cache: bool
    cache_ttl: float | None
    cache_backend: CacheBackend
    cache_backend_config: dict[str, Any] | None
    cache_key: Callable[..., Hashable] | None
    cache_ignore: str | Collection[str]
    cache_namespace: str
    cache_maxsize: int | None
    cache_serializer: CacheSerializer
    cache_secret: str | bytes | None
    rate_limit: float | None
    rate_limit_scope: RateLimitScope
    rate_limit_burst: int
    rate_limit_backend: RateLimitBackend
    rate_limit_backend_config: dict[str, Any] | None
    rate_limit_per: RateLimitPer
    arg_fallback: str | None
    fallback_delay: float
    fallback_strategy: FallbackStrategy
    candidate_breaker: bool | Breaker | None
    candidate_rate_limit: float | None
    candidate_rate_limit_burst: int
    circuit_breaker: bool | Breaker | None
    breaker_backend: BreakerBackend
    breaker_backend_config: dict[str, Any] | None
    on_retry: Callable[..., Any] | None
    on_success: Callable[..., Any] | None
    on_failure: Callable[..., Any] | None
    on_cache_hit: Callable[..., Any] | None
