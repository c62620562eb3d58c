"""The pipeline: every policy of one decorated function, built once.

``Pipeline`` holds the validated policies (cache, rate limit, retry,
fallback, callbacks) and the statistics.  ``Run`` is the failure path of one
call: after the first error it decides which candidate and attempt come next
and how long to wait, and builds the ``AllFailedError`` at the end.  Both the
sync and the async shell (``opero.core.shell``) drive the same ``Run``, so the
retry and fallback logic exists once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, final

from opero.core import clock
from opero.core.cache import CacheLayer
from opero.core.callbacks import Callbacks
from opero.core.fallback import FallbackPolicy
from opero.core.frozen import Frozen
from opero.core.rate_limit import RateLimit
from opero.core.retry import RetryPolicy
from opero.core.single_flight import AsyncSingleFlight, SingleFlight
from opero.core.stats import Counters, Statistics
from opero.exceptions import AllFailedError

__all__ = ["Pipeline", "Run"]

logger = logging.getLogger("opero")


@final
class Pipeline(Frozen):
    """One decorated function's policies, outermost first."""

    __slots__ = (
        "cache",
        "callbacks",
        "config",
        "counters",
        "factory",
        "fallback",
        "flights",
        "func",
        "limiter",
        "name",
        "retry",
    )

    func: Callable[..., Any]
    #: ``module.qualname``, for log lines and error messages (never argument values).
    name: str
    retry: RetryPolicy
    cache: CacheLayer | None
    limiter: RateLimit | None
    fallback: FallbackPolicy | None
    callbacks: Callbacks
    #: The decorator arguments, as given, for introspection.
    config: Mapping[str, Any]
    counters: Counters
    #: Concurrent misses of one key share one computation (threads or tasks, by ``is_async``).
    flights: SingleFlight | AsyncSingleFlight
    #: ``factory(func, config)`` builds this pipeline again: how a pickled one is rebuilt.
    factory: Callable[[Callable[..., Any], Mapping[str, Any]], Pipeline] | None

    def __init__(
        self,
        func: Callable[..., Any],
        name: str,
        retry: RetryPolicy,
        *,
        cache: CacheLayer | None = None,
        limiter: RateLimit | None = None,
        fallback: FallbackPolicy | None = None,
        callbacks: Callbacks | None = None,
        config: Mapping[str, Any] | None = None,
        is_async: bool = False,
        factory: Callable[[Callable[..., Any], Mapping[str, Any]], Pipeline] | None = None,
    ) -> None:
        counters = Counters()
        self._init(
            func=func,
            name=name,
            retry=retry,
            cache=cache,
            limiter=limiter,
            fallback=fallback,
            callbacks=callbacks if callbacks is not None else Callbacks(),
            config=config if config is not None else {},
            counters=counters,
            flights=AsyncSingleFlight(counters) if is_async else SingleFlight(counters),
            factory=factory,
        )
        # The shells keep some of these parts in their closures; see opero.core.owned.
        counters.own(self)
        if cache is not None:
            cache.own(self, "cache")

    # A pipeline is one function's live state: identity, not value, equality.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        # Not every field: ``config`` can hold redis passwords, shown masked here.
        from opero.core.secrets import masked_settings  # noqa: PLC0415 - only when shown

        return (
            f"Pipeline(name={self.name!r}, layers={list(self.layers)!r}, "
            f"config={masked_settings(self.config)!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as "build it again from the function and its settings".

        A decorated function shipped to another process (cloudpickle by value,
        ``distributed``) gets that process's own fresh state: new counters,
        its own memory cache, stores and limiters opened there.  Locks, pools
        and connections are never pickled.
        """
        if self.factory is None:
            msg = f"the pipeline of {self.name} cannot be pickled: it has no factory"
            raise TypeError(msg)
        return (self.factory, (self.func, dict(self.config)))

    def cache_clear(self) -> None:
        """Forget every cached result of this function (nothing to do without a cache)."""
        if self.cache is not None:
            self.cache.clear()

    @property
    def layers(self) -> tuple[str, ...]:
        """The active layers, outermost first."""
        present = {
            "cache": self.cache is not None,
            "rate_limit": self.limiter is not None,
            "retry": True,
            "fallback": self.fallback is not None,
        }
        return tuple(name for name, on in present.items() if on)

    def statistics(self) -> Statistics:
        """A snapshot of this function's counters."""
        return self.counters.snapshot(self.cache.errors if self.cache is not None else 0)

    def first_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], Sequence[Any] | None]:
        """Arguments of the first attempt (first fallback candidate) and the candidates."""
        fallback = self.fallback
        if fallback is None:
            return args, kwargs, None
        candidates = fallback.candidates(args, kwargs)
        if candidates is None:
            return args, kwargs, None
        call_args, call_kwargs = fallback.substitute(args, kwargs, candidates[0])
        return call_args, call_kwargs, candidates

    def reserve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        """Reserve this call's start with the limiter; the seconds to wait (0 if none).

        The wait is not yet accounted: the shell does that once it has waited
        (see `Counters.waited_for`), so a call cancelled mid-wait counts only
        the time it spent.
        """
        if self.limiter is None:
            return 0.0
        return self._log_rate_wait(self.limiter.reserve_for(args, kwargs, clock.now()))

    async def areserve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        """:meth:`reserve` for async functions: a shared limiter is asked without blocking."""
        if self.limiter is None:
            return 0.0
        return self._log_rate_wait(await self.limiter.areserve_for(args, kwargs, clock.now()))

    def rate_delay(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        """:meth:`reserve` with the wait accounted at once (a map's parent, which always waits)."""
        delay = self.reserve(args, kwargs)
        if delay > 0:
            self.counters.add_wait(delay)
        return delay

    def _log_rate_wait(self, delay: float) -> float:
        if delay > 0 and logger.isEnabledFor(logging.DEBUG):
            logger.debug("opero: %s rate-limited, waiting %.3fs", self.name, delay)
        return delay

    def log_hit(self) -> None:
        """Log a cache hit (at DEBUG, by function name only)."""
        logger.debug("opero: %s cache hit", self.name)

    def non_retryable(self, error: BaseException) -> None:
        """Account an error that ``retry_on`` does not cover (it propagates as is)."""
        next(self.counters.failures)
        logger.debug(
            "opero: %s raised %s, which retry_on does not cover; not retrying",
            self.name,
            type(error).__name__,
        )


@final
class Run:
    """The failure path of one call: which candidate and attempt come next.

    Created only after the first retryable error, so a successful call never
    allocates one.  Retries and fallbacks are counted when the next call
    starts (:meth:`call_args`), not when it is planned, so a call cancelled
    during a backoff has not retried.
    """

    __slots__ = (
        "args",
        "attempt",
        "candidates",
        "errors",
        "index",
        "kwargs",
        "pending",
        "pipeline",
        "started",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        candidates: Sequence[Any] | None,
    ) -> None:
        self.pipeline = pipeline
        self.args = args
        self.kwargs = kwargs
        self.candidates = candidates
        #: 1-based number of the attempt in progress.
        self.attempt = 1
        #: Index of the fallback candidate in progress.
        self.index = 0
        self.errors: list[BaseException] = []
        self.started = clock.now()
        #: The counter the next call's start advances (retries or fallbacks).
        self.pending: Any = None

    def failed(self, error: BaseException) -> float | None:
        """Record ``error``; return the seconds to wait before the next call, or None to give up.

        After it returns, :attr:`index` is 0 when the next call starts a new
        retry attempt (the shell then fires ``on_retry``).
        """
        pipeline = self.pipeline
        self.errors.append(error)
        debug = logger.isEnabledFor(logging.DEBUG)
        if self.candidates is not None and self.index + 1 < len(self.candidates):
            self.index += 1
            self.pending = pipeline.counters.fallbacks
            if debug:
                logger.debug(
                    "opero: %s candidate %d of %r failed (%s); trying candidate %d",
                    pipeline.name,
                    self.index - 1,
                    pipeline.fallback.name if pipeline.fallback else None,
                    type(error).__name__,
                    self.index,
                )
            return pipeline.fallback.delay if pipeline.fallback else 0.0
        if self.attempt <= pipeline.retry.retries:
            failed_attempt = self.attempt
            delay = pipeline.retry.delay(failed_attempt, lambda: self._tenacity_state(error))
            self.attempt += 1
            self.index = 0
            self.pending = pipeline.counters.retries
            if debug:
                logger.debug(
                    "opero: %s attempt %d failed (%s); retry %d of %d in %.3fs",
                    pipeline.name,
                    failed_attempt,
                    type(error).__name__,
                    failed_attempt,
                    pipeline.retry.retries,
                    delay,
                )
            return delay
        return None

    def call_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments for the next call (the current candidate substituted); counts its start."""
        next(self.pending)
        if self.candidates is None or self.pipeline.fallback is None:
            return self.args, self.kwargs
        return self.pipeline.fallback.substitute(
            self.args, self.kwargs, self.candidates[self.index]
        )

    def give_up(self) -> AllFailedError:
        """The error that ends the call, logged at WARNING (types only, no values)."""
        pipeline = self.pipeline
        next(pipeline.counters.failures)
        detail = _plural(self.attempt, "attempt")
        if self.candidates is not None:
            detail += f" \u00d7 {_plural(len(self.candidates), 'candidate')}"
        calls = _plural(len(self.errors), "call")
        message = f"{calls} of {pipeline.name} failed: {detail}"
        logger.warning(
            "opero: %s gave up after %s (%s); last error %s",
            pipeline.name,
            calls,
            detail,
            type(self.errors[-1]).__name__,
        )
        return AllFailedError(message, errors=self.errors)

    def _tenacity_state(self, error: BaseException) -> Any:
        """A ``tenacity.RetryCallState`` for a user-supplied tenacity wait strategy."""
        import tenacity  # noqa: PLC0415 - only users who passed wait= pay for the import

        now = clock.now()
        state = tenacity.RetryCallState(None, self.pipeline.func, self.args, self.kwargs)  # type: ignore[arg-type]
        state.start_time = self.started
        state.attempt_number = self.attempt
        state.outcome = tenacity.Future.construct(self.attempt, error, has_exception=True)
        state.outcome_timestamp = now
        return state


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
