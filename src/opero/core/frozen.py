"""A base for small immutable value objects.

The policies are frozen so that a pipeline built at decoration time cannot be
changed behind its back.  ``dataclasses`` would do this too, but importing it
pulls in ``inspect`` and its dependencies, which is most of the cost of
``import opero``; these few lines keep the import light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Frozen"]


class Frozen:
    """Slotted, immutable, compared and printed by its fields (its ``__slots__``)."""

    __slots__ = ()

    def _init(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[str, ...]:
        return tuple(
            name
            for cls in reversed(type(self).__mro__)
            for name in getattr(cls, "__slots__", ())
            if not name.startswith("_")
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return {name: getattr(self, name) for name in self._fields()}

    def __setattr__(self, name: str, value: Any) -> None:
        msg = f"{type(self).__name__} is frozen; build a new one instead of setting {name!r}"
        raise AttributeError(msg)

    def __delattr__(self, name: str) -> None:
        msg = f"{type(self).__name__} is frozen"
        raise AttributeError(msg)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through ``_init``: the default would set each slot with the
        # ``__setattr__`` that freezing forbids.
        cls = type(self)
        state = {
            name: getattr(self, name)
            for klass in cls.__mro__
            for name in getattr(klass, "__slots__", ())
            if name != "__weakref__" and hasattr(self, name)
        }
        return (_restore, (cls, state))


def _restore(cls: type[Frozen], state: dict[str, Any]) -> Frozen:
    obj = object.__new__(cls)
    obj._init(**state)
    return obj
