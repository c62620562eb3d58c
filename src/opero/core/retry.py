"""Retry policy: which errors are retried, how often, and how long to wait.

The policy does no I/O.  It answers two questions for the shells in
``opero.core.shell``: "is this error retryable?" (``retry_on``, checked with an
``except`` clause so the success path costs nothing) and "how long before retry
attempt *k*?" (``delay``).  The default backoff is computed inline; a tenacity
wait strategy passed as ``wait=`` is consulted only on the failure path, so
tenacity's per-call machinery never touches a successful call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, final

from opero.core import validate
from opero.core.frozen import Frozen
from opero.core.routing import ErrorFilter, Filter, error_filter
from opero.exceptions import ConfigurationError

__all__ = [
    "RetryPolicy",
    "WaitStrategy",
    "normalize_retry_on",
    "require_tenacity",
    "tenacity_state",
]

#: A tenacity wait strategy, or any callable taking a ``tenacity.RetryCallState``.
WaitStrategy = Callable[[Any], float]


def normalize_retry_on(retry_on: object) -> Filter:
    """Exception classes (one, a tuple or a list) or a predicate; else a ConfigurationError."""
    return error_filter("retry_on", retry_on)


def require_tenacity(wait: WaitStrategy | None) -> WaitStrategy | None:
    """Check, when ``wait=`` is given, that tenacity (extra ``[tenacity]``) can be imported.

    The strategy is handed a ``tenacity.RetryCallState`` on the failure path, which
    needs tenacity; a plain callable can be passed without it, so the missing
    package is reported here, at decoration, rather than from inside a failing call.
    """
    if wait is not None:
        try:
            import tenacity  # noqa: F401, PLC0415 - only users of wait= need it
        except ImportError as exc:
            msg = (
                "wait= (a tenacity wait strategy) needs tenacity: "
                'pip install "opero[tenacity]", or use min_delay/backoff_factor/max_delay'
            )
            raise ConfigurationError(msg) from exc
    return wait


@final
class RetryPolicy(Frozen):
    """How many times to retry and how long to wait in between.

    ``retries=N`` allows up to N+1 attempts.  The delay before retry attempt
    *k* (k = 1, 2, ...) is ``min(max_delay, min_delay * backoff_factor ** (k - 1))``;
    with ``jitter=True`` it is drawn uniformly from ``[0, that bound]`` ("full
    jitter"), which spreads out clients that failed together.
    """

    __slots__ = (
        "backoff_factor",
        "jitter",
        "max_delay",
        "max_retry_after",
        "min_delay",
        "retries",
        "retry_after",
        "retry_on",
        "wait",
    )

    retries: int
    #: Errors worth retrying: exception classes, or a predicate on the error.
    retry_on: Filter
    backoff_factor: float
    min_delay: float
    max_delay: float
    jitter: bool
    #: A tenacity wait strategy used instead of the built-in backoff.
    wait: WaitStrategy | None
    #: ``retry_after(error) -> seconds | None``: the user's reading of a server's delay.
    retry_after: Callable[[BaseException], float | None] | None
    #: The longest server delay waited for (``max_delay`` when None); a longer one gives up.
    max_retry_after: float | None

    def __init__(
        self,
        *,
        retries: int = 3,
        retry_on: ErrorFilter | list[type[BaseException]] = Exception,
        backoff_factor: float = 1.5,
        min_delay: float = 0.1,
        max_delay: float = 30.0,
        jitter: bool = False,
        wait: WaitStrategy | None = None,
        retry_after: Callable[[BaseException], float | None] | None = None,
        max_retry_after: float | None = None,
    ) -> None:
        # Retry-After is read on the failure path only: its module loads with the first policy.
        from opero.core.retry_after import check_settings  # noqa: PLC0415

        check_settings(retry_after, max_retry_after)
        retries = validate.integer(
            "retries", retries, minimum=0, hint=" (retries=N means up to N+1 attempts)"
        )
        low = validate.number("min_delay", min_delay)
        high = validate.number("max_delay", max_delay)
        if high < low:
            msg = f"max_delay ({high:g}) must be >= min_delay ({low:g})"
            raise ConfigurationError(msg)
        factor = validate.number(
            "backoff_factor", backoff_factor, minimum=1.0, maximum=math.inf, kind="a finite number"
        )
        self._init(
            retries=retries,
            retry_on=normalize_retry_on(retry_on),
            backoff_factor=factor,
            min_delay=low,
            max_delay=high,
            jitter=validate.flag("jitter", jitter),
            wait=require_tenacity(validate.function("wait", wait, "a tenacity wait strategy")),
            retry_after=retry_after,
            max_retry_after=None if max_retry_after is None else float(max_retry_after),
        )

    @property
    def max_attempts(self) -> int:
        """The most times the function runs for one call (per fallback candidate)."""
        return self.retries + 1

    def bound(self, attempt: int) -> float:
        """The un-jittered delay before retry attempt ``attempt`` (1-based)."""
        try:
            value = self.min_delay * self.backoff_factor ** (attempt - 1)
        except OverflowError:  # a long-running retry loop: the cap has long applied
            return self.max_delay if self.min_delay > 0 else 0.0
        return min(self.max_delay, value)

    def delay(self, attempt: int, state: Callable[[], Any] | None = None) -> float:
        """Seconds to wait before retry attempt ``attempt`` (1-based).

        ``state`` builds a ``tenacity.RetryCallState`` on demand; it is only
        called when a tenacity ``wait`` strategy is configured.
        """
        if self.wait is not None:
            value = float(self.wait(state() if state is not None else None))
            return value if value > 0 and math.isfinite(value) else 0.0
        bound = self.bound(attempt)
        if self.jitter:
            import random  # noqa: PLC0415 - only jittered retries pay for the import

            return random.uniform(0.0, bound)
        return bound

    def server_wait(self, error: BaseException) -> tuple[float | None, bool]:
        """``(the delay ``error`` asks for (Retry-After) or None, whether it may be waited for)``.

        A delay above ``max_retry_after`` (``max_delay`` when that is not set) may
        not: the call gives up instead, since waiting less than the server asked
        only earns another refusal.
        """
        from opero.core.retry_after import server_delay  # noqa: PLC0415 - see __init__

        asked = server_delay(error, self.retry_after)
        if asked is None:
            return None, True
        cap = self.max_delay if self.max_retry_after is None else self.max_retry_after
        return asked, asked <= cap


def tenacity_state(run: Any, error: BaseException) -> Any:
    """A ``tenacity.RetryCallState`` for a user-supplied tenacity wait strategy.

    ``run`` is the failing call's `Run <opero.core.run.Run>`; ``error`` its latest error.
    """
    import tenacity  # noqa: PLC0415 - only users who passed wait= pay for the import

    from opero.core import clock  # noqa: PLC0415 - the failure path only

    state = tenacity.RetryCallState(None, run.pipeline.func, run.args, run.kwargs)  # type: ignore[arg-type]
    state.start_time = run.started
    state.attempt_number = run.attempt
    state.outcome = tenacity.Future.construct(run.attempt, error, has_exception=True)
    state.outcome_timestamp = clock.now()
    return state
