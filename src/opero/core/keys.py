"""Cache keys: one call's arguments as a hashable value, and as a stable string.

In memory the key is the bound arguments themselves (for the common
all-positional call, the ``args`` tuple with no copying).  Persistent and
shared backends need a string that is the same in every process and on every
host, so :func:`digest` encodes the frozen key canonically (sets sorted, no
``hash()`` anywhere, since string hashes differ between processes) and hashes
that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Any, final

from opero.core.backends.memory import MISSING

__all__ = ["KeyFunction", "digest", "freeze", "key_function"]


@final
class _Tag:
    """Type markers inside frozen keys, so ``[1]`` and ``(1,)`` stay distinct."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __reduce__(self) -> str:
        return f"_{self.name.upper()}_TAG"


_DICT_TAG, _LIST_TAG, _SET_TAG, _PICKLE_TAG = (_Tag(n) for n in ("dict", "list", "set", "pickle"))


def freeze(value: Any) -> Hashable:
    """An equal-for-equal hashable stand-in for ``value``.

    Dicts (in any insertion order), lists, sets and tuples are frozen
    recursively; other unhashable objects (also those whose ``__hash__``
    raises) by their pickle.  Raises ``TypeError`` for an object that is
    neither hashable nor picklable.
    """
    if isinstance(value, dict):
        items = sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=_order)
        return (_DICT_TAG, tuple(items))
    if isinstance(value, list):
        return (_LIST_TAG, tuple(freeze(v) for v in value))
    if isinstance(value, tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return (_SET_TAG, frozenset(freeze(v) for v in value))
    try:
        hash(value)
    except Exception:  # unhashable, or a __hash__ that raises: the pickle stands in
        import pickle  # noqa: PLC0415 - rare path; keeps `import opero` light

        try:
            return (_PICKLE_TAG, type(value).__qualname__, pickle.dumps(value, protocol=5))
        except Exception as exc:
            msg = f"cannot build a cache key from a {type(value).__qualname__}"
            raise TypeError(msg) from exc
    return value  # type: ignore[no-any-return]


def _order(item: tuple[Hashable, Hashable]) -> tuple[str, str]:
    return (type(item[0]).__qualname__, repr(item[0]))


KeyFunction = Callable[[tuple[Any, ...], dict[str, Any]], Hashable]


def key_function(func: Callable[..., Any]) -> KeyFunction:
    """A function from one call's ``(args, kwargs)`` to its key, specialised to ``func``.

    The signature is studied once.  When every parameter is
    positional-or-keyword and the call passes them all positionally, the key
    is the ``args`` tuple itself; otherwise arguments are bound by name with
    defaults applied.  A call that does not fit the signature gets ``MISSING``
    (it is not cached; the call itself then raises its own ``TypeError``).
    """
    import inspect  # noqa: PLC0415 - decoration time only; keeps `import opero` light

    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have no signature
        return lambda args, kwargs: (args, tuple(sorted(kwargs.items()))) if kwargs else args
    params = tuple(signature.parameters.values())
    if not all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params):

        def general(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return MISSING
            bound.apply_defaults()
            return (bound.args, tuple(sorted(bound.kwargs.items())))

        return general

    arity = len(params)
    names = tuple(p.name for p in params)
    known = frozenset(names)
    defaults = tuple(p.default for p in params)
    empty = inspect.Parameter.empty

    def simple(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if not kwargs and len(args) == arity:
            return args
        given = len(args)
        if (
            given > arity
            or not known.issuperset(kwargs)
            or not kwargs.keys().isdisjoint(names[:given])
        ):
            return MISSING
        values = list(args)
        for name, default in zip(names[given:], defaults[given:], strict=True):
            value = kwargs.get(name, default)
            if value is empty:
                return MISSING
            values.append(value)
        return tuple(values)

    return simple


def digest(key: Hashable) -> str:
    """A short hex digest of ``key`` that is the same in every process and on every host.

    ``key`` should be frozen (see :func:`freeze`).  Types are part of the
    encoding, so ``1``, ``1.0`` and ``True`` get different digests here (a
    persistent cache outlives the process, and a value read back should be the
    one computed for exactly these arguments).
    """
    parts: list[bytes] = []
    _encode(key, parts)
    return hashlib.sha256(b"".join(parts)).hexdigest()[:40]


def _sized(tag: bytes, data: bytes) -> bytes:
    return tag + str(len(data)).encode() + b":" + data


def _encode(value: Any, out: list[bytes]) -> None:
    kind = type(value)
    if value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is int:
        out.append(b"i" + str(value).encode() + b";")
    elif kind is float:
        out.append(b"f" + float.hex(value).encode() + b";")
    elif kind is str:
        out.append(_sized(b"s", value.encode("utf-8", "surrogatepass")))
    elif kind is bytes:
        out.append(_sized(b"b", value))
    elif kind is tuple:
        out.append(b"(")
        for item in value:
            _encode(item, out)
        out.append(b")")
    elif kind is frozenset:
        members = []
        for item in value:
            sub: list[bytes] = []
            _encode(item, sub)
            members.append(b"".join(sub))
        out.append(b"{" + b"".join(sorted(members)) + b"}")
    elif kind is _Tag:
        out.append(_sized(b"<", value.name.encode()))
    else:
        import pickle  # noqa: PLC0415 - rare: arguments of other types

        qualname = f"{kind.__module__}.{kind.__qualname__}".encode()
        out.append(_sized(b"o", qualname) + _sized(b"", pickle.dumps(value, protocol=4)))
