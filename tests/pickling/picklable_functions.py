"""Decorated functions at module level: pickled by reference (module and name)."""

from __future__ import annotations

from opero import opero, opmap


@opero(cache=True, retries=1)
def square(n: int) -> int:
    """Squares ``n``; cached."""
    return n * n


@opero(retries=1)
async def asquare(n: int) -> int:
    """Squares ``n``, asynchronously."""
    return n * n


@opmap(mode="thread", workers=2, progress=False)
def doubled(n: int) -> int:
    """Doubles ``n``, over many items."""
    return n * 2
