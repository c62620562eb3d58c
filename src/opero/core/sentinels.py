"""The cache layer's two markers, one meaning each.

``MISSING`` is what a read finds where there is no value: the key has no entry,
it expired, or the read failed (``None`` is a value, and is cached).
``NO_KEY`` is what a key function gives for a call that has no usable key: its
arguments do not fit the signature, a ``cache_key`` raised, or the key has no
hashable (memory) or picklable (stores) form.  Such a call runs uncached.

Neither is ever an argument value or a result, so ``is`` tells them apart.
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["MISSING", "NO_KEY"]


@final
class _Sentinel:
    """A named marker that pickles by name, so it stays the one object after a round trip.

    A decorated function shipped by value carries the markers in its globals.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


#: No cached value under this key (no entry, expired, or the read failed).
MISSING: Final = _Sentinel("MISSING")
#: No usable key for this call: it runs uncached.
NO_KEY: Final = _Sentinel("NO_KEY")
