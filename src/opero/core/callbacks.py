"""Event callbacks: arity decided once, failures contained.

``on_retry(error, attempt)``, ``on_success(result)``, ``on_failure(error)`` and
``on_cache_hit()`` may each also be written to take no arguments (a health
check that only counts).  Which form a callback has is decided from its
signature at decoration time.  A callback that raises is logged at WARNING and
the call goes on: monitoring must never break the thing it monitors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, final

from opero.core.frozen import Frozen
from opero.exceptions import ConfigurationError

__all__ = ["Callback", "Callbacks"]

logger = logging.getLogger("opero")

#: Each callback's name and the arguments opero passes to it.
_ARITY = {"on_retry": 2, "on_success": 1, "on_failure": 1, "on_cache_hit": 0}


def _accepts(func: Callable[..., Any], count: int) -> bool | None:
    """Whether ``func`` can be called with ``count`` positional arguments (None: unknown)."""
    import inspect  # noqa: PLC0415 - decoration time only

    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


@final
class Callback(Frozen):
    """One user callback and how to call it."""

    __slots__ = ("func", "is_async", "name", "with_args")

    name: str
    func: Callable[..., Any]
    #: Pass opero's arguments (True) or call with none (False).
    with_args: bool
    #: An ``async def`` callback, awaited by the async shell.
    is_async: bool

    def __init__(
        self, name: str, func: Callable[..., Any], *, with_args: bool, is_async: bool
    ) -> None:
        self._init(name=name, func=func, with_args=with_args, is_async=is_async)

    @classmethod
    def build(cls, name: str, func: Callable[..., Any], *, for_async: bool) -> Callback:
        """Check ``func`` and decide how to call it, or raise ConfigurationError."""
        import inspect  # noqa: PLC0415 - decoration time only

        count = _ARITY[name]
        if not callable(func):
            msg = f"{name} must be a callable, got {func!r}"
            raise ConfigurationError(msg)
        is_async = inspect.iscoroutinefunction(func)
        if is_async and not for_async:
            msg = (
                f"{name} is an async function, but the decorated function is sync; use a plain def"
            )
            raise ConfigurationError(msg)
        full = _accepts(func, count)
        if full is None or full:
            return cls(name, func, with_args=True, is_async=is_async)
        if count and _accepts(func, 0):
            return cls(name, func, with_args=False, is_async=is_async)
        expected = {
            "on_retry": "on_retry(error, attempt) or on_retry()",
            "on_success": "on_success(result) or on_success()",
            "on_failure": "on_failure(error) or on_failure()",
            "on_cache_hit": "on_cache_hit()",
        }[name]
        msg = f"{name} must be callable as {expected}; its signature does not fit"
        raise ConfigurationError(msg)

    def fire(self, *args: Any) -> Any:
        """Call it; return its result (an awaitable for async callbacks), or None if it raised."""
        try:
            return self.func(*args) if self.with_args else self.func()
        except Exception:
            self.log_failure()
            return None

    async def fire_async(self, *args: Any) -> None:
        """Call it and await it if it is async; never raises."""
        result = self.fire(*args)
        if self.is_async and result is not None:
            try:
                await result
            except Exception:
                self.log_failure()

    def log_failure(self) -> None:
        """Log (with traceback, without arguments) that the callback raised."""
        logger.warning("opero %s callback raised; ignoring it", self.name, exc_info=True)


@final
class Callbacks(Frozen):
    """The four optional callbacks of one decorated function."""

    __slots__ = ("on_cache_hit", "on_failure", "on_retry", "on_success")

    on_retry: Callback | None
    on_success: Callback | None
    on_failure: Callback | None
    on_cache_hit: Callback | None

    def __init__(
        self,
        on_retry: Callback | None = None,
        on_success: Callback | None = None,
        on_failure: Callback | None = None,
        on_cache_hit: Callback | None = None,
    ) -> None:
        self._init(
            on_retry=on_retry,
            on_success=on_success,
            on_failure=on_failure,
            on_cache_hit=on_cache_hit,
        )

    @classmethod
    def build(cls, *, for_async: bool, **funcs: Callable[..., Any] | None) -> Callbacks:
        """Build from the decorator's ``on_*`` arguments (``None`` for absent)."""
        return cls(
            **{
                name: Callback.build(name, func, for_async=for_async)
                for name, func in funcs.items()
                if func is not None
            }
        )
