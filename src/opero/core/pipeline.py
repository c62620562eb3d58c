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
        "fallback",
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
    ) -> None:
        self._init(
            func=func,
            name=name,
            retry=retry,
            cache=cache,
            limiter=limiter,
            fallback=fallback,
            callbacks=callbacks if callbacks is not None else Callbacks(),
            config=config if config is not None else {},
            counters=Counters(),
        )

    # A pipeline is one function's live state: identity, not value, equality.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

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

    def rate_delay(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        """Reserve this call's start with the limiter; the seconds to wait (0 if none)."""
        if self.limiter is None:
            return 0.0
        delay = self.limiter.reserve_for(args, kwargs, clock.now())
        if delay > 0:
            self.counters.add_wait(delay)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("opero: %s rate-limited, waiting %.3fs", self.name, delay)
        return delay

    async def arate_delay(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        """:meth:`rate_delay` for async functions: a shared limiter is asked without blocking."""
        areserve = getattr(self.limiter, "areserve_for", None)
        if areserve is None:
            return self.rate_delay(args, kwargs)
        delay: float = await areserve(args, kwargs, clock.now())
        if delay > 0:
            self.counters.add_wait(delay)
            if logger.isEnabledFor(logging.DEBUG):
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
    allocates one.
    """

    __slots__ = (
        "args",
        "attempt",
        "candidates",
        "errors",
        "index",
        "kwargs",
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
            next(pipeline.counters.fallbacks)
            if debug:
                logger.debug(
                    "opero: %s candidate %d of %r failed (%s); trying candidate %d",
                    pipeline.name,
                    self.index - 1,
                    pipeline.fallback.name if pipeline.fallback else None,
                    type(error).__name__,
                    self.index,
                )
            delay = pipeline.fallback.delay if pipeline.fallback else 0.0
        elif self.attempt <= pipeline.retry.retries:
            failed_attempt = self.attempt
            delay = pipeline.retry.delay(failed_attempt, lambda: self._tenacity_state(error))
            self.attempt += 1
            self.index = 0
            next(pipeline.counters.retries)
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
        else:
            return None
        if delay > 0:
            pipeline.counters.add_wait(delay)
        return delay

    def call_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments for the next call: the current fallback candidate substituted."""
        if self.candidates is None or self.pipeline.fallback is None:
            return self.args, self.kwargs
        return self.pipeline.fallback.substitute(
            self.args, self.kwargs, self.candidates[self.index]
        )

    def give_up(self) -> AllFailedError:
        """The error that ends the call, logged at WARNING (types only, no values)."""
        pipeline = self.pipeline
        next(pipeline.counters.failures)
        count = len(self.errors)
        detail = ""
        if self.candidates is not None:
            detail = f" ({self.attempt} attempts x {len(self.candidates)} candidates)"
        message = f"All {count} attempts failed for {pipeline.name}{detail}"
        logger.warning(
            "opero: %s gave up after %d attempts; last error %s",
            pipeline.name,
            count,
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
