"""Correlation ids: one id that ties a call's log records and its error together.

The current id lives in a context variable, so it follows a call into the asyncio
tasks it starts and through ``await``; a map carries it to its pool threads, worker
processes and Dask workers with each chunk (they do not inherit context variables),
and sets it around each item there.

Where it comes from, first match wins:

1. the innermost ``with opero.correlation(...)`` block (or ``async with``);
2. the trace id of the active OpenTelemetry span, as 32 hex digits, when the
   application uses OpenTelemetry (opero never imports it: an application that
   has a span active has imported ``opentelemetry.trace`` itself);
3. otherwise there is none: [`correlation_id`][opero.correlation_id] returns ``None``.

Reading the id costs a context variable lookup, and it is read only on failure
paths and where a log record is written, never on a call's success path.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar, Token
from types import TracebackType
from typing import final

__all__ = ["correlation", "correlation_id", "enter", "leave"]

#: The id set by the innermost ``correlation`` block (or carried into a map's worker).
_current: ContextVar[str | None] = ContextVar("opero_correlation_id", default=None)


def correlation_id() -> str | None:
    """The current correlation id, or ``None`` when there is none.

    It is the id of the innermost [`correlation`][opero.correlation] block; outside any,
    the trace id of the active OpenTelemetry span (32 lowercase hex digits), if there
    is one; else ``None``.  Log records and ``AllFailedError`` carry it.

    Examples:
        >>> import opero
        >>> opero.correlation_id() is None
        True
        >>> with opero.correlation("order-1138"):
        ...     opero.correlation_id()
        'order-1138'
    """
    explicit = _current.get()
    return explicit if explicit is not None else _span_trace_id()


def _span_trace_id() -> str | None:
    """The active OpenTelemetry span's trace id, or None (no span, or no OpenTelemetry)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # not imported by the application: no span can be active
        return None
    try:
        context = trace.get_current_span().get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None
    except Exception:  # a half-imported or unusual OpenTelemetry: no id, never an error
        return None


@final
class correlation:  # noqa: N801 - used like a function: ``with opero.correlation():``
    """Make ``id`` the correlation id inside the block (sync ``with`` or ``async with``).

    Without ``id``, the active OpenTelemetry span's trace id is used if there is one,
    else a new random id (``uuid4().hex``, 32 hex digits).  The block's value is the id.
    Blocks nest: the inner id holds inside, the outer one again after it.  A map
    started inside the block carries the id to every item, in every mode.

    Args:
        id: the id to use (any non-empty string: a request id, a job id).

    Raises:
        ConfigurationError: ``id`` is not a non-empty string.

    Examples:
        >>> import opero
        >>> with opero.correlation() as made:
        ...     len(made), opero.correlation_id() == made
        (32, True)
        >>> opero.correlation_id() is None
        True
    """

    __slots__ = ("_tokens", "id")

    def __init__(self, id: str | None = None) -> None:
        if id is not None and (not isinstance(id, str) or not id):
            from opero.exceptions import ConfigurationError  # noqa: PLC0415 - errors only

            msg = f"correlation(id=...) must be a non-empty string or None, got {type(id).__name__}"
            raise ConfigurationError(msg)
        #: The id the block sets (made now when none was given).
        self.id: str = id if id is not None else (_span_trace_id() or _random_id())
        self._tokens: list[Token[str | None]] = []

    def __enter__(self) -> str:
        self._tokens.append(_current.set(self.id))
        return self.id

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(kind, error, traceback)

    def __repr__(self) -> str:
        return f"correlation(id={self.id!r})"


def _random_id() -> str:
    import uuid  # noqa: PLC0415 - only blocks without an id pay for the import

    return uuid.uuid4().hex


def enter(id: str | None) -> Token[str | None] | None:
    """Set ``id`` (carried from a map's caller) around one chunk; None when there is none.

    The two-call form for the map's workers, which run many chunks: ``leave`` undoes it.
    """
    return None if id is None else _current.set(id)


def leave(token: Token[str | None] | None) -> None:
    """Undo `enter`."""
    if token is not None:
        _current.reset(token)
