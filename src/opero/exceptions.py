"""Exceptions raised by opero.

Every opero exception is an ``OperoError``, which is a ``RuntimeError`` so that
code written against "the call failed at run time" keeps working.  Messages
name functions, parameters, attempt counts and error types, never the values
of arguments: fallback candidates are often API keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opero.core.attempts import AttemptRecord

__all__ = [
    "AllFailedError",
    "AttemptError",
    "CacheKeyWarning",
    "CancelledItemError",
    "CircuitOpenError",
    "ConcurrencyError",
    "ConfigurationError",
    "DeadlineExceeded",
    "OperoError",
    "ResultRejected",
]

#: How many errors ``str(AllFailedError)`` spells out before summarising the rest.
_SHOWN_ERRORS = 3


class OperoError(RuntimeError):
    """Base class of every error opero raises itself."""


class ConfigurationError(OperoError, ValueError):
    """A decorator parameter (or a value it depends on) is not acceptable.

    Raised at decoration time wherever the problem can be seen then, so a bad
    setting fails at import rather than on the first production call.  It is
    also a ``ValueError`` because it describes a bad value.
    """


class AllFailedError(OperoError):
    """Every attempt and every fallback candidate failed.

    Attributes:
        errors: every error of every attempt and candidate, in the order they
            happened.
        attempt_count: ``len(errors)``.
        attempts: one [`AttemptRecord`][opero.AttemptRecord] per error, in the same
            order, when opero's engine raised it: the attempt number, the candidate's
            index, when it started and how long it took, the error, and the wait
            before the next attempt with its reason.  ``()`` for an error built
            elsewhere (a map's per-item ``timeout=``, a rebuilt one).
        correlation_id: the [correlation id][opero.correlation_id] of the call, or
            None when there was none.

    Nothing opero adds to ``str()``, ``repr()`` or the records names an argument
    value or a candidate: candidates go by index, and a record's ``repr()`` shows
    its error's type only.

    The error survives serializers in both forms they use: plain pickle keeps
    ``errors`` themselves (and ``__cause__``); a serializer that can only carry
    ``args`` as JSON (Celery's json result backend) rebuilds it as
    ``AllFailedError(*args)``, and ``args[1]`` then holds one ``"Type: message"``
    line per error, which come back as [`AttemptError`][opero.exceptions.AttemptError]
    placeholders, so ``attempt_count`` and ``str()`` still agree with the message
    (the attempt records and the correlation id do not survive that form).

    Examples:
        >>> err = AllFailedError("2 calls failed", errors=[ValueError("a"), KeyError("b")])
        >>> err.attempt_count
        2
        >>> AllFailedError(*err.args).errors
        [AttemptError('ValueError: a'), AttemptError("KeyError: 'b'")]
    """

    def __init__(
        self,
        message: str,
        errors: Sequence[BaseException | str] = (),
        *,
        attempts: Sequence[AttemptRecord] = (),
        correlation_id: str | None = None,
    ) -> None:
        kept = [e if isinstance(e, BaseException) else AttemptError(str(e)) for e in errors]
        super().__init__(message, tuple(_summary(e) for e in kept))
        self.errors: list[BaseException] = kept
        self.attempt_count: int = len(kept)
        self.attempts: tuple[AttemptRecord, ...] = tuple(attempts)
        self.correlation_id: str | None = correlation_id

    @property
    def last_error(self) -> BaseException | None:
        """The error of the final attempt, or ``None`` if there were none."""
        return self.errors[-1] if self.errors else None

    def __str__(self) -> str:
        base = str(self.args[0]) if self.args else ""
        if not self.errors:
            return base
        lines = [base, "Attempt details:"]
        lines.extend(
            f"  {number}. {_summary(error)}"
            for number, error in enumerate(self.errors[:_SHOWN_ERRORS], 1)
        )
        hidden = len(self.errors) - _SHOWN_ERRORS
        if hidden > 0:
            lines.append(f"  ... and {hidden} more errors")
        return "\n".join(lines)

    def __reduce__(
        self,
    ) -> tuple[type[AllFailedError], tuple[str, list[BaseException]], dict[str, object]]:
        # Keeps ``errors``, the attempt records and ``__cause__`` when the error crosses a
        # process boundary (opmap); pickled together, the cause stays the same object as
        # errors[-1], and each record's error the same object as its entry in errors.
        message = str(self.args[0]) if self.args else ""
        state: dict[str, object] = {
            "__cause__": self.__cause__,
            "attempts": self.attempts,
            "correlation_id": self.correlation_id,
        }
        return (type(self), (message, self.errors), state)


class DeadlineExceeded(AllFailedError, TimeoutError):  # noqa: N818 - the name is the contract (CONTRACT 30)
    """The call's ``deadline=`` ran out before an attempt succeeded.

    It holds every error so far, like [`AllFailedError`][opero.exceptions.AllFailedError],
    and it is also a ``TimeoutError``, so both ``except AllFailedError`` and
    ``except TimeoutError`` catch it: code that already treats a timed-out call as a
    ``TimeoutError`` (``@opmap``'s per-item ``timeout=``, CONTRACT 19) keeps working.
    It pickles the same way, errors and cause included.

    Examples:
        >>> err = DeadlineExceeded("deadline of 2s passed after 1 attempt", [OSError("x")])
        >>> isinstance(err, TimeoutError), isinstance(err, AllFailedError), err.attempt_count
        (True, True, 1)
    """


class AttemptError(OperoError):
    """Stands in for one attempt's error after a round trip that could not carry it.

    Only ``"Type: message"`` survives a serializer that keeps exception
    ``args`` as JSON; this keeps that line, so the rebuilt ``AllFailedError``
    still counts and prints every attempt.
    """

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        #: The original error's ``"Type: message"`` line.
        self.summary = summary

    def __str__(self) -> str:
        return self.summary


def _summary(error: BaseException) -> str:
    if type(error) is AttemptError:
        return error.summary
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class ResultRejected(OperoError):  # noqa: N818 - it names what happened to the result
    """``retry_if_result`` said "try again" to a value the function returned.

    One is made per rejected result; when the attempts run out they are the
    ``errors`` of the ``AllFailedError``.  The message names the function and the
    attempt only, never the value.

    Attributes:
        result: the rejected value itself.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[type[ResultRejected], tuple[str, object]]:
        return (type(self), (str(self.args[0]) if self.args else "", self.result))


class CircuitOpenError(OperoError):
    """Every breaker that could take the call is open, so nothing was called.

    Raised at once, before any call, rate slot or attempt is spent.  It names the
    open candidates by index (never by value) and when the first one lets a probe
    through again.

    Attributes:
        candidates: the indexes of the open candidates; ``()`` for a function's own
            ``circuit_breaker=``.
        retry_in: seconds from the raise until the first breaker reopens, or None when
            none is waiting on a time (every half-open probe is in flight).
        reopens_at: the same moment as wall-clock time (``time.time()`` seconds), which
            still means something in another process; None with ``retry_in``.

    Examples:
        >>> import pickle
        >>> err = CircuitOpenError("all 2 candidates open", candidates=(0, 1), retry_in=4.5)
        >>> copy = pickle.loads(pickle.dumps(err))
        >>> copy.candidates, copy.retry_in, str(copy)
        ((0, 1), 4.5, 'all 2 candidates open')
    """

    def __init__(
        self,
        message: str,
        candidates: Sequence[int] = (),
        retry_in: float | None = None,
        reopens_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.candidates: tuple[int, ...] = tuple(candidates)
        self.retry_in = retry_in
        self.reopens_at = reopens_at

    def __reduce__(
        self,
    ) -> tuple[type[CircuitOpenError], tuple[str, tuple[int, ...], float | None, float | None]]:
        message = str(self.args[0]) if self.args else ""
        return (type(self), (message, self.candidates, self.retry_in, self.reopens_at))


class ConcurrencyError(OperoError):
    """A pool-level failure: a worker died, a result could not be sent back."""


class CancelledItemError(OperoError):
    """An ``opmap`` item was never started because ``should_process`` said stop."""


class CacheKeyWarning(UserWarning):
    """Some calls of a cached function cannot be cache keys, so they run uncached.

    Issued once per function, pointing at its ``def``: the message names the
    parameter whose value could not be keyed (never the value) and the ways
    out, ``cache_ignore=`` or ``cache_key=``.  Also issued when a function is
    decorated whose parameter holds a new per-request object on every call
    (a FastAPI ``Request``).  Silence it with the standard warning filters, e.g.
    ``warnings.filterwarnings("ignore", category=opero.CacheKeyWarning)``.
    """
