"""Telling the programmer, once, that a function's calls cannot be cache keys, and what to do.

A key that cannot be built is a usage problem, not an outage: the same
arguments fail the same way on every call, so without a word the cache would
simply never work for them (a method whose ``self`` holds a lock, on disk,
sqlite or redis).  Python's way to say "this is used wrong" is
:func:`warnings.warn` with a category of its own: shown on stderr by default
(no logging setup needed), once per location, filterable by category, and
raised where it happens under ``-W error``.  So opero issues a
:class:`~opero.CacheKeyWarning` that points at the decorated function's
``def`` (where the fix goes), once per function, naming the parameter (never
its value) and the two ways out, ``cache_ignore=`` and ``cache_key=``; the same
text goes to the ``"opero"`` logger at WARNING for those who collect logs.

A parameter that holds a new per-request object on every call (a starlette or
FastAPI ``Request``) breaks nothing, so no call can notice it: with it in the
key the cache never hits and keeps every such object alive until evicted.
Such parameters are recognised from their annotations when the cache is
built, and reported the same way.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, final

from opero.exceptions import CacheKeyWarning
from opero.utils.logging import fields

if TYPE_CHECKING:
    from opero.core.keys import Keys

__all__ = ["KeyReport"]

logger = logging.getLogger("opero")

#: Base classes whose instances exist once per request (starlette's, which FastAPI re-exports).
_PER_REQUEST = {
    "starlette.requests": {"HTTPConnection"},  # Request and WebSocket
    "starlette.responses": {"Response"},
    "starlette.background": {"BackgroundTasks"},
}


@final
class KeyReport:
    """The warning of one function's cache about keys: said at most once."""

    __slots__ = ("_done", "_where", "function", "ignore")

    def __init__(self, func: Callable[..., Any], ignore: tuple[str, ...]) -> None:
        import inspect  # noqa: PLC0415 - decoration time only

        module = getattr(func, "__module__", None) or "?"
        #: ``module.qualname`` of the decorated function, as logs and statistics name it.
        self.function = f"{module}.{getattr(func, '__qualname__', type(func).__qualname__)}"
        self.ignore = ignore
        self._done = False
        code = getattr(inspect.unwrap(func), "__code__", None)
        #: Where the warning points: the decorated function's ``def`` line.
        self._where = (code.co_filename, code.co_firstlineno, module) if code is not None else None

    def unkeyable(self, keys: Keys | None, key: Hashable, *, persistent: bool) -> None:
        """Say that ``key`` (built by ``keys``, or None: by ``cache_key``) cannot be a key.

        The first parameter whose value cannot be part of a key of this kind
        (``persistent``: disk, sqlite, redis; else memory) is the one named.
        """
        if self._done:
            return
        check = _store_check if persistent else _memory_check
        why = (
            "cannot be pickled (disk, sqlite and redis keys are built from the pickle)"
            if persistent
            else "can be neither hashed nor pickled"
        )
        if keys is None:
            self.say(
                f"the key that cache_key returned {why}, so these calls run uncached. "
                "Return a str, or a value made of numbers, strings, tuples and the like."
            )
            return
        for name, value in keys.parts(key):
            try:
                check(value)
            except Exception:
                self.parameter(name, f"(of type {type(value).__qualname__}) {why}")
                return
        self.say(
            f"its arguments {why}, so these calls run uncached. Leave the parameter out "
            "of the key with cache_ignore=(...) or build the key yourself with cache_key=."
        )

    def parameter(self, name: str, problem: str) -> None:
        """Say that parameter ``name``'s value has ``problem``, and how to leave it out."""
        advice = repr((*self.ignore, name))
        shared = " With 'self' left out, every instance shares one cache." if name == "self" else ""
        self.say(
            f"the value of parameter {name!r} {problem}, so these calls run uncached. "
            f"Leave the parameter out of the key with cache_ignore={advice} or build the "
            f"key yourself with cache_key=.{shared}"
        )

    def custom_failed(self, error: BaseException) -> None:
        """Say that ``cache_key`` raised (not its message, which may hold argument values)."""
        self.say(
            f"cache_key raised {type(error).__name__}, so these calls run uncached. "
            "cache_key is called as cache_key(func, *args, **kwargs)."
        )

    def per_request(self, func: Callable[..., Any]) -> None:
        """At decoration: warn about parameters annotated with a per-request class."""
        found = [
            (name, kind) for name, kind in _per_request_parameters(func) if name not in self.ignore
        ]
        if not found:
            return
        names = ", ".join(repr(name) for name, _ in found)
        kinds = ", ".join(sorted({kind for _, kind in found}))
        advice = repr((*self.ignore, *(name for name, _ in found)))
        self.say(
            f"parameter {names} holds a new {kinds} on every call: in the cache key, no "
            "two calls would share an entry, and the memory cache would keep each one "
            f"alive until evicted. Leave it out of the key with cache_ignore={advice}.",
            once=False,
        )

    def say(self, text: str, *, once: bool = True) -> None:
        """Warn (``CacheKeyWarning`` at the function's ``def``) and log ``text`` once."""
        if once:
            if self._done:
                return
            self._done = True
        message = f"opero cannot cache {self.function} as it should: {text}"
        logger.warning(message, extra=fields(self.function))
        if self._where is None:
            warnings.warn(message, CacheKeyWarning, stacklevel=3)
            return
        filename, lineno, module = self._where
        # A registry of our own: the default "once per location" then holds per function.
        warnings.warn_explicit(message, CacheKeyWarning, filename, lineno, module, {})


def _memory_check(value: Any) -> object:
    """Raises for a value that the memory cache can neither hash nor freeze."""
    from opero.core.key_values import freeze  # noqa: PLC0415

    return freeze(value)


def _store_check(value: Any) -> object:
    """Raises for a value that disk, sqlite and redis keys cannot encode."""
    from opero.core.key_values import digest, freeze  # noqa: PLC0415

    return digest(freeze(value))


def _per_request_parameters(func: Callable[..., Any]) -> list[tuple[str, str]]:
    """``(name, class name)`` of each parameter annotated with a per-request class."""
    import inspect  # noqa: PLC0415

    try:
        signature = inspect.signature(func, eval_str=True)
    except Exception:  # an annotation that does not evaluate: use them as written
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return []
    import typing  # noqa: PLC0415

    found = []
    for param in signature.parameters.values():
        annotation = param.annotation
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]  # Annotated[Request, ...]
        if not isinstance(annotation, type):
            continue
        for base in annotation.__mro__:
            if base.__name__ in _PER_REQUEST.get(base.__module__, ()):
                found.append((param.name, annotation.__name__))
                break
    return found
