"""Cache keys: one call's arguments as a hashable value, and as a stable string.

In memory the key is the bound arguments themselves (for the common
all-positional call, the ``args`` tuple with no copying).  Persistent and
shared backends need a string that is the same in every process and on every
host: :func:`~opero.core.key_values.digest` of the frozen key.

Two things change a key's shape, both decided once per function:
``cache_ignore`` leaves named parameters out (the key is then the tuple of the
kept values), and a memory cache holds a method's ``self`` through a weak
reference, so that caching a method does not keep its instances alive.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Hashable, Iterator
from operator import itemgetter
from typing import Any, final

from opero.core.key_values import digest, freeze
from opero.core.sentinels import NO_KEY
from opero.exceptions import ConfigurationError

__all__ = ["KeyFunction", "Keys", "digest", "freeze", "ignored_names", "key_function"]


KeyFunction = Callable[[tuple[Any, ...], dict[str, Any]], Hashable]


def key_function(func: Callable[..., Any]) -> KeyFunction:
    """A function from one call's ``(args, kwargs)`` to its key, specialised to ``func``.

    When every parameter is positional-or-keyword and the call passes them all
    positionally, the key is the ``args`` tuple itself; otherwise arguments
    are bound by name with defaults applied.  A call that does not fit the
    signature gets ``NO_KEY`` (it is not cached; the call itself then raises
    its own ``TypeError``).
    """
    return Keys(func).key


def ignored_names(value: object) -> tuple[str, ...]:
    """``cache_ignore`` as a tuple of names without repeats: one ``str``, or a collection of them.

    Raises ConfigurationError for anything else (a generator would be used up
    by the first of the several times the settings are read).
    """
    if isinstance(value, str):
        return (value,)
    if (
        isinstance(value, Collection)
        and not isinstance(value, (bytes, bytearray))
        and all(isinstance(name, str) for name in value)
    ):
        return tuple(dict.fromkeys(sorted(value) if isinstance(value, (set, frozenset)) else value))
    from opero.core.validate import show  # noqa: PLC0415 - decoration time only

    msg = (
        "cache_ignore must be a parameter name or a tuple, list or set of parameter names; "
        f"got {show(value)}"
    )
    raise ConfigurationError(msg)


@final
class Keys:
    """How the calls of one function become cache keys, studied once at decoration.

    ``key`` is the hot path.  ``parts`` is for the rare key that cannot be
    built: it names the parameter behind each part, so the warning can say
    which one to leave out.

    Raises ConfigurationError when ``ignore`` names a parameter ``func`` does not have.
    """

    __slots__ = ("_labels", "ignore", "key", "weak")

    def __init__(
        self, func: Callable[..., Any], ignore: tuple[str, ...] = (), *, weak_self: bool = False
    ) -> None:
        import inspect  # noqa: PLC0415 - decoration time only; keeps `import opero` light

        self.ignore = ignore
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have no signature
            if ignore:
                msg = f"cache_ignore needs a function with a signature; {func!r} has none"
                raise ConfigurationError(msg) from None
            self.key: KeyFunction = _unbound
            self.weak = False
            self._labels: Callable[[Hashable], list[tuple[str, Any]]] = lambda key: []
            return
        params = tuple(signature.parameters.values())
        names = tuple(p.name for p in params)
        unknown = [name for name in ignore if name not in names]
        if unknown:
            msg = (
                f"cache_ignore names {', '.join(map(repr, unknown))}, which "
                f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
                f"{getattr(func, '__qualname__', func)!r}; its parameters are "
                f"{', '.join(names) or 'none'}"
            )
            raise ConfigurationError(msg)
        if ignore:
            self.key, self._labels = _ignoring(signature, ignore)
        elif all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params):
            self.key, self._labels = _simple(params), _in_order(names)
        else:
            self.key = _general(signature)

            def rebound(key: Any) -> list[tuple[str, Any]]:
                return list(signature.bind(*key[0], **dict(key[1])).arguments.items())

            self._labels = rebound
        #: ``self`` is held weakly in the keys (see :func:`_weakly`).
        self.weak = weak_self and _is_method(params) and "self" not in ignore
        if self.weak:
            simple = not ignore and all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
            self.key = _weakly(self.key, len(params) if simple else None)

    def parts(self, key: Hashable) -> Iterator[tuple[str, Any]]:
        """Each parameter name in ``key`` with its value (a weakly held ``self`` dereferenced)."""
        try:
            labelled = self._labels(key)
        except Exception:  # not a key of this shape (a custom key): nothing to name
            return
        for name, value in labelled:
            yield name, value() if isinstance(value, weakref.ref) else value


def _is_method(params: tuple[Any, ...]) -> bool:
    """The first parameter is a method's ``self``: named so, and passed positionally."""
    if not params:
        return False
    first = params[0]
    return first.name == "self" and first.kind in (
        first.POSITIONAL_ONLY,
        first.POSITIONAL_OR_KEYWORD,
    )


def _in_order(names: tuple[str, ...]) -> Callable[[Hashable], list[tuple[str, Any]]]:
    def labels(key: Any) -> list[tuple[str, Any]]:
        return list(zip(names, key, strict=False))

    return labels


def _unbound(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    return (args, tuple(sorted(kwargs.items()))) if kwargs else args


def _fill(params: tuple[Any, ...]) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """For all-positional-or-keyword ``params``: every value in order, defaults applied."""
    import inspect  # noqa: PLC0415

    arity = len(params)
    names = tuple(p.name for p in params)
    known = frozenset(names)
    defaults = tuple(p.default for p in params)
    empty = inspect.Parameter.empty

    def fill(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        given = len(args)
        if (
            given > arity
            or not known.issuperset(kwargs)
            or not kwargs.keys().isdisjoint(names[:given])
        ):
            return NO_KEY
        values = list(args)
        for name, default in zip(names[given:], defaults[given:], strict=True):
            value = kwargs.get(name, default)
            if value is empty:
                return NO_KEY
            values.append(value)
        return tuple(values)

    return fill


def _simple(params: tuple[Any, ...]) -> KeyFunction:
    arity = len(params)
    fill = _fill(params)

    def simple(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if not kwargs and len(args) == arity:
            return args
        return fill(args, kwargs)  # type: ignore[no-any-return]

    return simple


def _general(signature: Any) -> KeyFunction:
    def general(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return NO_KEY
        bound.apply_defaults()
        return (bound.args, tuple(sorted(bound.kwargs.items())))

    return general


def _ignoring(
    signature: Any, ignore: tuple[str, ...]
) -> tuple[KeyFunction, Callable[[Hashable], list[tuple[str, Any]]]]:
    """Keys of the values of every parameter not in ``ignore``, in signature order."""
    params = tuple(signature.parameters.values())
    kept = tuple(i for i, p in enumerate(params) if p.name not in ignore)
    kept_names = tuple(params[i].name for i in kept)
    pick: Callable[[Any], tuple[Any, ...]]
    if len(kept) > 1:
        pick = itemgetter(*kept)
    elif kept:
        only = kept[0]
        pick = lambda values: (values[only],)  # noqa: E731
    else:
        pick = lambda values: ()  # noqa: E731
    labels = _in_order(kept_names)
    if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params):
        arity = len(params)
        fill = _fill(params)

        def positional(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            if not kwargs and len(args) == arity:
                return pick(args)
            values = fill(args, kwargs)
            return NO_KEY if values is NO_KEY else pick(values)

        return positional, labels
    var_keyword = {p.name for p in params if p.kind is p.VAR_KEYWORD}

    def bound(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        try:
            arguments = signature.bind(*args, **kwargs)
        except TypeError:
            return NO_KEY
        arguments.apply_defaults()
        values = arguments.arguments
        return tuple(
            tuple(sorted(values[name].items())) if name in var_keyword else values[name]
            for name in kept_names
        )

    return bound, labels


def _weakly(build: KeyFunction, arity: int | None) -> KeyFunction:
    """``build`` with a method's ``self`` held weakly, if its type allows weak references.

    ``weakref.ref(obj)`` hashes and compares as ``obj`` while ``obj`` lives, so
    equal instances still share entries; once ``obj`` is gone its entries can
    no longer match and the memory cache drops them (see ``MemoryCache``).
    Python hands out the same plain reference while one exists, and a stored
    key keeps one, so a hit allocates nothing.  ``arity``: the all-positional
    call of a simple signature is keyed in one step.
    """
    ref = weakref.ref

    def weakly(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if not kwargs and len(args) == arity:
            try:
                held = ref(args[0])
            except TypeError:  # no weak references to this type (``__slots__``): held as is
                return args
            # ``self`` and one argument is the common method; a slice costs an allocation.
            return (held, args[1]) if arity == 2 else (held,) + args[1:]  # noqa: RUF005
        if args:
            try:  # noqa: SIM105 - contextlib.suppress costs a call on every call
                args = (ref(args[0]),) + args[1:]  # noqa: RUF005
            except TypeError:
                pass
        return build(args, kwargs)

    return weakly
