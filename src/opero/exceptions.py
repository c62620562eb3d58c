"""Exceptions raised by opero.

Every opero exception is an ``OperoError``, which is a ``RuntimeError`` so that
code written against "the call failed at run time" keeps working.  Messages
name functions, parameters, attempt counts and error types, never the values
of arguments: fallback candidates are often API keys.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AllFailedError",
    "CancelledItemError",
    "ConcurrencyError",
    "ConfigurationError",
    "OperoError",
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

    Example:
        >>> err = AllFailedError("All 2 attempts failed", errors=[ValueError("a"), KeyError("b")])
        >>> err.attempt_count
        2
    """

    def __init__(self, message: str, errors: Sequence[BaseException] = ()) -> None:
        super().__init__(message)
        self.errors: list[BaseException] = list(errors)
        self.attempt_count: int = len(self.errors)

    @property
    def last_error(self) -> BaseException | None:
        """The error of the final attempt, or ``None`` if there were none."""
        return self.errors[-1] if self.errors else None

    def __str__(self) -> str:
        base = super().__str__()
        if not self.errors:
            return base
        lines = [base, "Attempt details:"]
        for number, error in enumerate(self.errors[:_SHOWN_ERRORS], 1):
            lines.append(f"  {number}. {type(error).__name__}: {error}")
        hidden = len(self.errors) - _SHOWN_ERRORS
        if hidden > 0:
            lines.append(f"  ... and {hidden} more errors")
        return "\n".join(lines)

    def __reduce__(
        self,
    ) -> tuple[type[AllFailedError], tuple[str, list[BaseException]], dict[str, object]]:
        # Keeps ``errors`` and ``__cause__`` when the error crosses a process boundary
        # (opmap); pickled together, the cause stays the same object as errors[-1].
        message = str(self.args[0]) if self.args else ""
        return (type(self), (message, self.errors), {"__cause__": self.__cause__})


class ConcurrencyError(OperoError):
    """A pool-level failure: a worker died, a result could not be sent back."""


class CancelledItemError(OperoError):
    """An ``opmap`` item was never started because ``should_process`` said stop."""
