"""What type checkers see of ``@opero`` and ``@opmap``: setting names and decorated functions.

Nothing here runs: the decorators return plain functions (so they bind as
methods and pickle by reference), and these Protocols describe them to mypy
and pyright.  Three shapes need care:

* **Methods.**  A decorated function is a descriptor, so ``OperoFunction``
  has a ``__get__`` that drops the first parameter when it is read from an
  instance (``client.get("/a")``), as a plain function does.  Its overloads
  are chosen on the type of ``self`` (``Concatenate[S, P]`` against the
  instance), the way typeshed and ``asyncstdlib`` bind cache wrappers.
* **Class methods.**  Both checkers hand ``@classmethod`` over to the inner
  object's ``__get__`` when that object is not a plain function, and mypy
  does not use the ``Concatenate`` prefix of ``self`` to pick an overload, so
  a function whose first parameter is a class (``cls: type[...]``) gets its
  own type, ``OperoClassMethod``, chosen when it is decorated: it is bound on
  every read, from the class and from an instance, as ``@classmethod`` does.
* **Static methods.**  For the same reason, mypy binds the first parameter of
  ``@staticmethod`` over ``@opero`` when it is read from an instance; no type
  can prevent that (mypy does not relate the instance to the parameter).
  pyright binds only when the instance fits the first parameter, so it
  checks static methods with their real signature.

The ``Literal`` aliases name the accepted strings, so a typo such as
``cache_backend="reddis"`` is an error before the code runs.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Literal,
    ParamSpec,
    Protocol,
    TypeAlias,
    TypeVar,
    overload,
)

from opero.decorators.settings import OperoSettings

if TYPE_CHECKING:
    from typing_extensions import Self

    from opero.core.stats import Statistics

__all__ = [
    "AsyncOpmapFunction",
    "BreakerBackend",
    "CacheBackend",
    "CacheSerializer",
    "FallbackStrategy",
    "Mode",
    "OperoClassMethod",
    "OperoDecorator",
    "OperoFunction",
    "OperoMethod",
    "OperoSettings",
    "OpmapDecorator",
    "OpmapFunction",
    "RateLimitBackend",
    "RateLimitPer",
    "RateLimitScope",
    "ScopeKind",
    "StartMethod",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")
C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

#: ``@opmap(mode=...)``: where the items run.
Mode: TypeAlias = Literal["thread", "process", "async", "async_process", "dask"]
#: ``cache_backend=``: where cached results live.
CacheBackend: TypeAlias = Literal["memory", "disk", "sqlite", "redis"]
#: ``cache_serializer=``: how disk, sqlite and redis entries are written.
CacheSerializer: TypeAlias = Literal["pickle", "json"]
#: ``rate_limit_backend=``: this process, or every process sharing a redis server.
RateLimitBackend: TypeAlias = Literal["memory", "redis"]
#: ``breaker_backend=``: key pools and circuit breakers in this process, or in redis.
BreakerBackend: TypeAlias = Literal["memory", "redis"]
#: ``rate_limit_per=``: a rate slot for every attempt (what the server sees), or per call.
RateLimitPer: TypeAlias = Literal["attempt", "call"]
#: ``fallback_strategy=``: the order one attempt tries the ``arg_fallback`` candidates in.
FallbackStrategy: TypeAlias = Literal["ordered", "round_robin", "least_loaded"]
#: ``@opmap(start_method=...)``: how worker processes start.
StartMethod: TypeAlias = Literal["fork", "forkserver", "spawn"]
#: The three scope kinds of ``rate_limit_scope=``.
ScopeKind: TypeAlias = Literal["per_function", "global", "per_args"]
#: ``rate_limit_scope=``: a scope kind, or any other string naming a group shared by every
#: function that names it.  Since a group name is any string, a checker accepts every
#: string here (a misspelt kind is a group to it); editors still offer the three kinds,
#: and a misspelt ``per_...`` kind is a ``ConfigurationError`` at decoration.
RateLimitScope: TypeAlias = ScopeKind | str


class OperoMethod(Protocol[P, R_co]):
    """A decorated method read from its instance (or a class method): ``self``/``cls`` bound."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_clear(self) -> None:
        """Forget every cached result of the method (of every instance)."""

    def statistics(self) -> Statistics:
        """Counts of calls, attempts, retries, fallbacks, cache hits and time waited."""


class OperoFunction(Protocol[P, R_co]):
    """A function decorated with ``@opero``: same signature, plus cache and stats helpers."""

    @property
    def __wrapped__(self) -> Callable[P, R_co]:
        """The undecorated function."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_clear(self) -> None:
        """Forget every cached result of this function."""

    def statistics(self) -> Statistics:
        """Counts of calls, attempts, retries, fallbacks, cache hits and time waited."""

    # Read from the class: the function itself, called with ``self`` (``Client.get(c, "/a")``).
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> Self: ...
    # Read from an instance that fits the first parameter: a method with it bound.
    @overload
    def __get__(
        self: OperoFunction[Concatenate[S, P2], R], instance: S, owner: type[Any] | None = None, /
    ) -> OperoMethod[P2, R]: ...
    # Anything else (pyright: ``@staticmethod`` over ``@opero``): unchanged.
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self: ...


class OperoClassMethod(Protocol[C_contra, P, R_co]):
    """A decorated function whose first parameter is a class: bound like ``@classmethod``.

    Called directly, it takes that class positionally (``make(Base, 1)``).
    """

    @property
    def __wrapped__(self) -> Callable[Concatenate[type[C_contra], P], R_co]:
        """The undecorated function."""
        ...

    def __call__(self, cls: type[C_contra], /, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_clear(self) -> None:
        """Forget every cached result of this function."""

    def statistics(self) -> Statistics:
        """Counts of calls, attempts, retries, fallbacks, cache hits and time waited."""

    # ``@classmethod`` reads it from the class (or the instance's class) it takes.
    @overload
    def __get__(self, instance: object, owner: type[C_contra], /) -> OperoMethod[P, R_co]: ...
    # Anything else (pyright: ``@staticmethod`` over ``@opero``): unchanged.
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self: ...


class OperoDecorator(Protocol):
    """What ``opero(...)`` with settings returns: it decorates one function."""

    @overload
    def __call__(
        self, func: Callable[Concatenate[type[C], P], R], /
    ) -> OperoClassMethod[C, P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> OperoFunction[P, R]: ...


class OpmapFunction(Protocol[T_contra, P, R]):
    """A sync function decorated with ``@opmap``: ``f(items, *args, **kwargs)``.

    Each entry is the result for one item, or the exception that item ended with.
    """

    @property
    def __wrapped__(self) -> Callable[Concatenate[T_contra, P], R]:
        """The undecorated one-item function."""
        ...

    def __call__(
        self, items: Iterable[T_contra], /, *args: P.args, **kwargs: P.kwargs
    ) -> list[R | BaseException]: ...

    def imap(
        self, items: Iterable[T_contra], /, *args: P.args, **kwargs: P.kwargs
    ) -> Iterator[R | BaseException]:
        """The entries in input order, lazily, with a bounded number of items in flight."""
        ...

    def imap_unordered(
        self, items: Iterable[T_contra], /, *args: P.args, **kwargs: P.kwargs
    ) -> Iterator[R | BaseException]:
        """The entries as they complete."""
        ...

    def cache_clear(self) -> None:
        """Forget every cached result of the one-item function."""

    def statistics(self) -> Statistics:
        """Counts over every item mapped so far."""


class AsyncOpmapFunction(Protocol[T_contra, P, R]):
    """An ``async def`` function decorated with ``@opmap``: ``await f(items, *args, **kwargs)``."""

    @property
    def __wrapped__(self) -> Callable[Concatenate[T_contra, P], Coroutine[Any, Any, R]]:
        """The undecorated one-item function."""
        ...

    def __call__(
        self, items: Iterable[T_contra], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, list[R | BaseException]]: ...

    def imap(
        self, items: Iterable[T_contra], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncIterator[R | BaseException]:
        """The entries in input order, lazily (``async for``)."""
        ...

    def imap_unordered(
        self, items: Iterable[T_contra], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncIterator[R | BaseException]:
        """The entries as they complete (``async for``)."""
        ...

    def cache_clear(self) -> None:
        """Forget every cached result of the one-item function."""

    def statistics(self) -> Statistics:
        """Counts over every item mapped so far."""


class OpmapDecorator(Protocol):
    """What ``opmap(...)`` with settings returns: it decorates one one-item function."""

    # An ``async def`` function first: it is also a function returning something.
    @overload
    def __call__(  # type: ignore[overload-overlap]  # the async case is the narrower one
        self, func: Callable[Concatenate[T, P], Coroutine[Any, Any, R]], /
    ) -> AsyncOpmapFunction[T, P, R]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[T, P], R], /) -> OpmapFunction[T, P, R]: ...
