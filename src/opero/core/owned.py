"""Live state that pickles as "the same part of the rebuilt pipeline".

A decorated function shipped by value (cloudpickle: a script, a notebook,
``distributed``) carries its closures, and for speed the hot path keeps a few
pieces of live state in them: counters, the memory cache's ``get``, a key
function.  Pickled on their own, those would be copies with no tie to each
other (or fail on their locks).  Each such part knows its owner, the
``Pipeline``, and its path in it; it pickles as that path, and the pipeline
pickles as "build it again from the function and its settings".  So the
receiving process gets one consistent, fresh state, as if it had decorated
the function itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Owned", "resolve"]


class Owned:
    """A part of one pipeline's live state; subclasses have an ``_owner`` slot."""

    __slots__ = ()

    def own(self, root: Any, *path: str) -> None:
        """Record that this part is ``root.<path>``, for pickling."""
        object.__setattr__(self, "_owner", (root, path))

    def __reduce__(self) -> tuple[Any, ...]:
        owner = getattr(self, "_owner", None)
        if owner is None:
            msg = f"a {type(self).__name__} pickles only as part of a decorated function"
            raise TypeError(msg)
        return (resolve, owner)


def resolve(root: Any, path: tuple[str, ...]) -> Any:
    """``root.<path>``: a part of a (rebuilt) pipeline."""
    for name in path:
        root = getattr(root, name)
    return root
