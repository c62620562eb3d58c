"""The state of one failing call: which candidate and attempt come next.

``Run`` is created only after a call's first error (a successful call never
allocates one).  It answers the questions the failure path
(:mod:`opero.core.flow`) asks: how long to wait before the next call, with
which arguments, and, once every attempt has failed, the ``AllFailedError``
that ends the call.  It keeps no I/O of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, final

from opero.core import clock
from opero.exceptions import AllFailedError

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline

__all__ = ["Run"]

logger = logging.getLogger("opero")


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
