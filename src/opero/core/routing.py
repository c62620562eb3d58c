"""Where an error (or a rejected result) goes next: the next candidate, the next attempt, or out.

Two settings route each error of a call (CONTRACT 26):

* ``fallback_on`` (default: the same as ``retry_on``): a matching error moves on at
  once to the next ``arg_fallback`` candidate of the same attempt;
* ``retry_on``: when the candidates are used up, or the error does not match
  ``fallback_on``, a matching error ends the attempt and the next one starts after
  the backoff.

Each is exception classes (one, or a tuple) or a predicate ``error -> bool``, so
"a revoked key moves to the next key, a 503 backs off" is
``fallback_on=AuthError, retry_on=(ServerError, RateLimited)``.  An error matching
neither propagates unwrapped.  ``retry_if_result=`` turns a returned value into an
error of its own, :class:`~opero.ResultRejected`, which is always retried.

Everything here is decided at decoration; a call only asks :meth:`Routing.route`,
and only after it failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, TypeGuard, cast, final

from opero.core import validate
from opero.core.frozen import Frozen
from opero.exceptions import ConfigurationError, ResultRejected

__all__ = ["ErrorFilter", "Routing", "error_filter"]

#: ``retry_on=`` / ``fallback_on=``: exception classes, or a predicate on the error.
ErrorFilter: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
#: An error filter as the engine uses it: a tuple for ``isinstance``, or the predicate.
Filter: TypeAlias = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def _is_error_class(value: object) -> TypeGuard[type[BaseException]]:
    return isinstance(value, type) and issubclass(value, BaseException)


def error_filter(name: str, value: object) -> Filter:
    """``value`` as a filter: an exception class, a non-empty tuple or list of them, or a predicate.

    A class is callable too, so classes are told apart first; an ``async def``
    predicate is refused (its coroutine would always be true).
    """
    if isinstance(value, (tuple, list)):
        if value and all(_is_error_class(cls) for cls in value):
            return cast("tuple[type[BaseException], ...]", tuple(value))
    elif _is_error_class(value):
        return (value,)
    elif callable(value) and not isinstance(value, type) and not _is_async(value):
        return cast("Callable[[BaseException], bool]", value)
    msg = (
        f"{name} must be an exception class, a non-empty tuple of exception classes, "
        f"or a plain (not async) predicate called as {name}(error) -> bool; "
        f"got {validate.show(value)}"
    )
    raise ConfigurationError(msg)


def _is_async(value: object) -> bool:
    import inspect  # noqa: PLC0415 - decoration time only; keeps `import opero` light

    call = getattr(value, "__call__", None)  # noqa: B004 - a callable object's own method
    return inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(call)


def _matches(rule: Filter, error: BaseException) -> bool:
    if type(rule) is tuple:
        return isinstance(error, rule)
    return bool(rule(error))  # type: ignore[operator]  # not a tuple: the predicate


@final
class Routing(Frozen):
    """``retry_on``, ``fallback_on`` and ``retry_if_result`` of one function, checked once.

    Examples:
        >>> routing = Routing(retry_on=(TimeoutError,), fallback_on=(PermissionError,))
        >>> [routing.route(e) for e in (PermissionError(), TimeoutError(), KeyError())]
        [(True, False), (False, True), (False, False)]
    """

    __slots__ = ("fallback_on", "result_check", "retry_on")

    #: Errors that end the attempt and are retried after the backoff.
    retry_on: Filter
    #: Errors that move to the next ``arg_fallback`` candidate at once.
    fallback_on: Filter
    #: ``retry_if_result(result) -> bool`` (sync, or async for an ``async def`` function).
    result_check: Callable[[Any], Any] | None

    def __init__(
        self,
        *,
        retry_on: object = Exception,
        fallback_on: object = None,
        result_check: Callable[[Any], Any] | None = None,
    ) -> None:
        retry = error_filter("retry_on", retry_on)
        fallback = retry if fallback_on is None else error_filter("fallback_on", fallback_on)
        self._init(retry_on=retry, fallback_on=fallback, result_check=result_check)

    def route(self, error: BaseException) -> tuple[bool, bool]:
        """``(to the next candidate, to the next attempt)`` for ``error``.

        A rejected result is always retried; it moves to the next candidate if
        ``fallback_on`` covers :class:`~opero.ResultRejected`.
        """
        retried = type(error) is ResultRejected or _matches(self.retry_on, error)
        return _matches(self.fallback_on, error), retried


def check_result_check(value: object, *, is_async: bool | None) -> Callable[[Any], Any] | None:
    """Check ``retry_if_result=``: None or a predicate; an async one only for ``async def``.

    ``is_async`` is None when the function is not known yet (``opero(...)`` before it
    is applied): then only the value's kind is checked.
    """
    check = validate.function("retry_if_result", value, "retry_if_result(result) -> bool")
    if check is not None and is_async is False and _is_async(check):
        msg = (
            "retry_if_result must be a plain (not async) predicate for a sync function, "
            "called as retry_if_result(result) -> bool; got an async function"
        )
        raise ConfigurationError(msg)
    return check
