"""The state of one failing call: which candidate and attempt come next, what each did.

``Run`` is created only after a call's first error (a successful call never allocates
one), or at the start of a call the engine runs whole (a deadline, a result check, a key
pool).  It answers the questions the engine (:mod:`opero.core.flow`) asks: how long to
wait before the next call, with which arguments, whether a wait still fits in the
deadline, and the error that ends the call (``AllFailedError``, or ``DeadlineExceeded``)
with the record of each attempt (:mod:`opero.core.attempts`).  It keeps no I/O of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, final

from opero.core import clock
from opero.core.attempts import BACKOFF, RETRY_AFTER, Trail
from opero.core.correlation import correlation_id
from opero.core.retry import tenacity_state
from opero.core.steps import Call
from opero.exceptions import AllFailedError, DeadlineExceeded, ResultRejected
from opero.utils.logging import fields

if TYPE_CHECKING:
    from opero.core.candidates import Candidate
    from opero.core.pipeline import Pipeline

__all__ = ["Run"]

logger = logging.getLogger("opero")


@final
class Run:
    """The failure path of one call: which candidate and attempt come next.

    Created only after the first retryable error, so a successful call never
    allocates one.  Retries and fallbacks are counted when the next call
    starts (:meth:`count_start`), not when it is planned, so a call cancelled
    during a backoff has not retried.
    """

    __slots__ = (
        "args",
        "attempt",
        "began",
        "candidates",
        "deadline",
        "errors",
        "index",
        "kwargs",
        "order",
        "pending",
        "picked",
        "pipeline",
        "pos",
        "started",
        "timed_by_deadline",
        "trail",
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
        #: A key pool's order for this attempt (None: by index, or not chosen yet).
        self.order: list[int] | None = None
        #: Position of the candidate in progress in the attempt's order (0: the first).
        self.pos = 0
        #: A key pool's candidate whose call is in progress (see opero.core.pool_flow).
        self.picked: Candidate | None = None
        self.errors: list[BaseException] = []
        self.started = started = clock.now()
        #: The clock time the call's ``deadline=`` ends, or None.
        self.deadline = None if pipeline.deadline is None else started + pipeline.deadline
        #: The attempt in progress was bounded by the deadline (not by its own timeout).
        self.timed_by_deadline = False
        #: The counter the next call's start advances (retries or fallbacks).
        self.pending: Any = None
        #: When the call in progress began (clock time); None: not measured (the shell's).
        self.began: float | None = None
        #: The records of the failed calls so far (made at the first failure).
        self.trail: Trail | None = None

    def ended(self, error: BaseException) -> None:
        """The call in progress failed with ``error`` (routed, or cut by the deadline): kept."""
        self.errors.append(error)
        trail = self.trail
        if trail is None:
            trail = self.trail = Trail()
        trail.ended(self.attempt, self.candidate(), self.began, error)
        self.began = None

    def waiting(self, seconds: float, reason: str) -> None:
        """A wait of ``seconds`` for ``reason`` begins before the next call (``attempts``)."""
        if self.trail is not None:
            self.trail.waiting(seconds, reason)

    def candidate(self) -> int | None:
        """The index of the candidate in progress; None without ``arg_fallback``."""
        return None if self.candidates is None else self.index

    def _fields(self, delay: float | None = None, reason: str | None = None) -> dict[str, Any]:
        """The ``extra`` of a log line about the call in progress (and the wait after it)."""
        return fields(
            self.pipeline.name, self.attempt, self.candidate(), delay, reason if delay else None
        )

    def failed(
        self, error: BaseException, *, to_fallback: bool = True, to_retry: bool = True
    ) -> tuple[float | None, float | None]:
        """Record ``error``; ``(seconds before the next call, or None to give up; server delay)``.

        ``to_fallback``/``to_retry`` are the error's routes (`Routing.route`).
        After it returns, :attr:`index` is 0 when the next call starts a new
        retry attempt (the engine then fires ``on_retry``).  The server delay is
        what a retried error asked for (``Retry-After``) and may be waited for,
        also when no retry is left (other callers still owe the server that pause);
        None when there is none or it was too long (the call gives up).
        """
        pipeline = self.pipeline
        debug = logger.isEnabledFor(logging.DEBUG)
        if to_fallback and self.candidates is not None and self._more():
            return self._next_candidate(error, debug), None
        if not to_retry:
            return None, None
        asked, allowed = pipeline.retry.server_wait(error)
        if not allowed:
            logger.warning(
                "opero: %s: the server asked to wait %.3fs, more than max_retry_after "
                "(or max_delay) allows; giving up",
                pipeline.name,
                asked,
                extra=self._fields(asked, RETRY_AFTER),
            )
            return None, None
        if self.attempt > pipeline.retry.retries:
            return None, asked
        failed_attempt = self.attempt
        delay = pipeline.retry.delay(failed_attempt, lambda: tenacity_state(self, error))
        reason = BACKOFF
        if asked is not None and asked >= delay:
            delay, reason = asked, RETRY_AFTER
        self.waiting(delay, reason)
        if debug:
            logger.debug(
                "opero: %s attempt %d failed (%s); retry %d of %d in %.3fs",
                pipeline.name,
                failed_attempt,
                type(error).__name__,
                failed_attempt,
                pipeline.retry.retries,
                delay,
                extra=self._fields(delay, reason),
            )
        self.attempt += 1
        self.index = self.pos = 0
        self.order = None
        self.pending = pipeline.counters.retries
        return delay, asked

    def _more(self) -> bool:
        # Another candidate in this attempt: by index, or in the pool's order.
        if self.pipeline.pool is None:
            return self.index + 1 < len(self.candidates or ())
        from opero.core.pool_flow import has_next  # noqa: PLC0415 - key pools only

        return has_next(self.pipeline, self)

    def _next_candidate(self, error: BaseException, debug: bool) -> float:
        """Move on to the next candidate; the ``fallback_delay`` before it."""
        pipeline = self.pipeline
        following = self.pos + 1
        if self.order is not None:
            following = self.order[following]
        delay = pipeline.fallback.delay if pipeline.fallback else 0.0
        self.waiting(delay, BACKOFF)
        if debug:
            logger.debug(
                "opero: %s candidate %d of %r failed (%s); trying candidate %d",
                pipeline.name,
                self.index,
                pipeline.fallback.name if pipeline.fallback else None,
                type(error).__name__,
                following,
                extra=self._fields(delay, BACKOFF),
            )
        self.pos += 1
        self.index = following
        self.pending = pipeline.counters.fallbacks
        return delay

    def fits(self, seconds: float) -> bool:
        """A wait of ``seconds`` from now would end before the deadline (always, without one)."""
        deadline = self.deadline
        return deadline is None or clock.now() + seconds < deadline

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        """The `Call` of the next attempt, bounded by its timeout and the deadline.

        None when the deadline has already passed.  A sync attempt is cut (run on a
        worker thread) only with ``attempt_timeout``; an async one is also cut by
        the deadline.  Without either it is a plain call.
        """
        pipeline, deadline = self.pipeline, self.deadline
        timeout = pipeline.attempt_timeout
        now = clock.now()
        if deadline is not None and now >= deadline:
            return None
        self.began = now  # the attempt begins: the last one's wait is known (``attempts``)
        if self.trail is not None:
            self.trail.began()
        if deadline is None and timeout is None:
            return Call(pipeline.func, args, kwargs)
        until = deadline
        if timeout is not None and (deadline is None or now + timeout < deadline):
            until = now + timeout
        self.timed_by_deadline = until == deadline
        cut = timeout is not None or pipeline.is_async
        return Call(pipeline.func, args, kwargs, until, cut=cut)

    def cut_by_deadline(self, error: BaseException) -> bool:
        """``error`` is the TimeoutError of an attempt the deadline stopped."""
        return (
            self.timed_by_deadline
            and isinstance(error, TimeoutError)
            and self.deadline is not None
            and clock.now() >= self.deadline
        )

    def rejected(self, result: Any) -> ResultRejected:
        """The error standing for a result ``retry_if_result`` rejected (it carries the result)."""
        message = (
            f"retry_if_result rejected the result of {self.pipeline.name} "
            f"(attempt {self.attempt}, candidate {self.index})"
        )
        return ResultRejected(message, result)

    def next_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments for the next call: the current candidate substituted."""
        if self.candidates is None or self.pipeline.fallback is None:
            return self.args, self.kwargs
        return self.pipeline.fallback.substitute(
            self.args, self.kwargs, self.candidates[self.index]
        )

    def count_start(self) -> None:
        """The next call starts: count it as the retry or the fallback it is."""
        next(self.pending)

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
            extra=self._fields(),
        )
        return AllFailedError(message, errors=self.errors, **self._context())

    def expired(self) -> DeadlineExceeded:
        """The error that ends a call whose deadline ran out (every error so far)."""
        pipeline = self.pipeline
        next(pipeline.counters.failures)
        calls = _plural(len(self.errors), "failed call")
        message = (
            f"the deadline of {pipeline.deadline:g}s for {pipeline.name} ran out after {calls}"
        )
        logger.warning("opero: %s", message, extra=self._fields())
        return DeadlineExceeded(message, errors=self.errors, **self._context())

    def _context(self) -> dict[str, Any]:
        """The attempt records and the correlation id the call's ``AllFailedError`` carries."""
        attempts = () if self.trail is None else self.trail.close()
        return {"attempts": attempts, "correlation_id": correlation_id()}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
