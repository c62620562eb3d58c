"""The pipeline: every policy of one decorated function, built once.

``Pipeline`` holds the validated policies (cache, rate limit, retry,
fallback, callbacks), the statistics and the single-flight table.  What
happens after a call fails is ``opero.core.flow`` (the steps) over
``opero.core.run`` (the state of one failing call).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, final

from opero.core import clock
from opero.core.attempts import RATE_LIMIT, RETRY_AFTER
from opero.core.breaker_state import BreakerState
from opero.core.cache import CacheLayer
from opero.core.callbacks import Callbacks
from opero.core.candidates import Pool
from opero.core.fallback import FallbackPolicy
from opero.core.frozen import Frozen
from opero.core.gate import PauseGate
from opero.core.owned import Owned
from opero.core.rate_limit import RateLimit
from opero.core.retry import RetryPolicy
from opero.core.routing import Routing
from opero.core.single_flight import AsyncSingleFlight, SingleFlight
from opero.core.stats import Counters, Statistics
from opero.utils.logging import fields

__all__ = ["Pipeline"]

logger = logging.getLogger("opero")


@final
class Pipeline(Frozen):
    """One decorated function's policies, outermost first."""

    __slots__ = (
        "attempt_timeout",
        "cache",
        "callbacks",
        "circuit",
        "config",
        "counters",
        "deadline",
        "engine",
        "factory",
        "fallback",
        "flights",
        "func",
        "gate",
        "limiter",
        "name",
        "per_attempt",
        "pool",
        "retry",
        "routing",
        "spans",
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
    #: Where each error goes (``retry_on``, ``fallback_on``) and ``retry_if_result``.
    routing: Routing
    #: Seconds for the whole call (``deadline=``), or None.
    deadline: float | None
    #: Seconds for each attempt (``attempt_timeout=``), or None.
    attempt_timeout: float | None
    #: Every call that reaches the function takes a rate slot (``rate_limit_per="attempt"``).
    per_attempt: bool
    #: The function's own pause after a server's ``Retry-After`` (used without a limiter).
    gate: PauseGate
    #: The whole call runs in the engine (a deadline, a result check, a key pool or a
    #: ``circuit_breaker=`` need it); else the shell makes the first call itself.
    engine: bool
    #: The ``arg_fallback`` candidates' health and budgets (``candidate_breaker=``,
    #: ``candidate_rate_limit=``, ``fallback_strategy=``), or None: by index 0, 1, ...
    pool: Pool | None
    #: The whole function's breaker (``circuit_breaker=``), or None.
    circuit: BreakerState | None
    #: Its calls get spans of their own (False for a map's items: the map has one span).
    spans: bool

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
        routing: Routing | None = None,
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        per_attempt: bool = True,
        pool: Pool | None = None,
        circuit: BreakerState | None = None,
    ) -> None:
        counters = Counters()
        routing = routing if routing is not None else Routing(retry_on=retry.retry_on)
        gate = PauseGate()
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
            routing=routing,
            deadline=deadline,
            attempt_timeout=attempt_timeout,
            per_attempt=per_attempt,
            gate=gate,
            engine=any(x is not None for x in (deadline, routing.result_check, pool, circuit)),
            pool=pool,
            circuit=circuit,
            spans=True,
        )
        gate.own(self, "gate")
        # The shells keep some of these parts in their closures; see opero.core.owned.
        counters.own(self)
        if cache is not None:
            cache.own(self, "cache")
        # A group's limiter is shared: it pickles as the limiter of the first function
        # that made it, which the receiving process's registry hands every function again.
        if isinstance(limiter, Owned) and getattr(limiter, "_owner", None) is None:
            limiter.own(self, "limiter")

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

    @property
    def is_async(self) -> bool:
        """The function is an ``async def`` (its single-flight waits on tasks)."""
        return type(self.flights) is AsyncSingleFlight

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
        """A snapshot of this function's counters, its candidates' health and its breaker's."""
        now, pool, circuit = clock.now(), self.pool, self.circuit
        return self.counters.snapshot(
            self.cache.errors if self.cache is not None else 0,
            () if pool is None else tuple(c.report(now) for c in pool.candidates),
            None if circuit is None else circuit.state(now),
        )

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
            return self.gate.wait(clock.now())
        return self._log_rate_wait(self.limiter.reserve_for(args, kwargs, clock.now()))

    async def areserve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        """:meth:`reserve` for async functions: a shared limiter is asked without blocking."""
        if self.limiter is None:
            return self.gate.wait(clock.now())
        return self._log_rate_wait(await self.limiter.areserve_for(args, kwargs, clock.now()))

    def pause(self, seconds: float) -> None:
        """A server asked for ``seconds``: pause the rate-limit scope, or this function."""
        self._log_pause(seconds)
        if self.limiter is None:
            self.gate.close(clock.now() + seconds)
        else:
            self.gate.note(clock.now() + seconds)
            self.limiter.pause_for(seconds, clock.now())

    async def apause(self, seconds: float) -> None:
        """:meth:`pause` for async functions: a shared limiter is told without blocking."""
        self._log_pause(seconds)
        if self.limiter is None:
            self.gate.close(clock.now() + seconds)
        else:
            self.gate.note(clock.now() + seconds)
            await self.limiter.apause_for(seconds, clock.now())

    def held(self) -> float:
        """After a wait for a rate slot: the seconds of a pause that began meanwhile (0 if none).

        A slot booked before a server's ``Retry-After`` must not start inside the
        pause.  Only calls that waited ask, so the success path reads no clock here.
        """
        gate = self.gate
        if self.limiter is not None:
            return gate.held_for(clock.now())
        return gate.wait(clock.now()) if gate.until or gate.link is not None else 0.0

    def _log_pause(self, seconds: float) -> None:
        extra = fields(self.name, delay=seconds, reason=RETRY_AFTER)
        logger.debug("opero: %s paused for %.3fs (Retry-After)", self.name, seconds, extra=extra)

    def rate_delay(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        """:meth:`reserve` with the wait accounted at once (a map's parent, which always waits)."""
        delay = self.reserve(args, kwargs)
        if delay > 0:
            self.counters.add_wait(delay)
        return delay

    def _log_rate_wait(self, delay: float) -> float:
        if delay > 0 and logger.isEnabledFor(logging.DEBUG):
            extra = fields(self.name, delay=delay, reason=RATE_LIMIT)
            logger.debug("opero: %s rate-limited, waiting %.3fs", self.name, delay, extra=extra)
        return delay

    def log_hit(self) -> None:
        """Log a cache hit (at DEBUG, by function name only)."""
        logger.debug("opero: %s cache hit", self.name, extra=fields(self.name))

    def non_retryable(self, error: BaseException) -> None:
        """Account an error that ``retry_on`` does not cover (it propagates as is)."""
        next(self.counters.failures)
        logger.debug(
            "opero: %s raised %s, which retry_on does not cover; not retrying",
            self.name,
            type(error).__name__,
            extra=fields(self.name),
        )
