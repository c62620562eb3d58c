"""A call's argument values as a hashable stand-in, and as a string stable across processes.

:func:`freeze` makes unhashable values (dicts, lists, sets, objects whose
``__hash__`` raises) usable as memory keys; :func:`digest` encodes a frozen key
canonically (sets sorted, no ``hash()`` anywhere, since string hashes differ
between processes) for the disk, sqlite and redis backends.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Hashable
from typing import Any, final

__all__ = ["digest", "freeze"]


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
        if isinstance(value, weakref.ref) and (referent := value()) is not None:
            return freeze(referent)  # a weakly held ``self`` that does not hash
        import pickle  # noqa: PLC0415 - rare path; keeps `import opero` light

        try:
            return (_PICKLE_TAG, type(value).__qualname__, pickle.dumps(value, protocol=5))
        except Exception as exc:
            msg = f"cannot build a cache key from a {type(value).__qualname__}"
            raise TypeError(msg) from exc
    return value  # type: ignore[no-any-return]


def _order(item: tuple[Hashable, Hashable]) -> tuple[str, str]:
    return (type(item[0]).__qualname__, repr(item[0]))


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
