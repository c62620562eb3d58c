"""The units a map moves: chunks out, batches back, and the outcomes an item can end with.

Work moves in chunks both ways: a chunk is ``(indices, items)`` and comes back
as a batch ``(indices, values, failed positions)`` with each exception in its
item's slot, so the per-item cost in the parent is a list append.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["NOT_STARTED", "Batch", "Chunk", "failed_batch", "pool_failure"]

#: Work sent out: ``(indices, items)``; the indices ascend (a ``range`` for fresh input).
Chunk = tuple[Sequence[int], list[Any]]
#: Work come back: ``(indices, values, positions that failed)``; exceptions sit in their slots.
Batch = tuple[Sequence[int], list[Any], list[int]]

#: The message of an item that ``should_process`` stopped before it started.
NOT_STARTED = "not started: should_process said stop"


def failed_batch(indices: Sequence[int], error: Callable[[], BaseException]) -> Batch:
    """A batch in which every item failed, each with its own ``error()``."""
    return (indices, [error() for _ in indices], list(range(len(indices))))


def pool_failure(indices: Sequence[int], error: Exception) -> Batch:
    """The batch of a chunk that the pool itself failed (e.g. could not pickle the arguments)."""
    from opero.exceptions import ConcurrencyError  # noqa: PLC0415 - chunks.py imports nothing

    problem = f"the pool could not run this item ({type(error).__name__}: {error})"
    return failed_batch(indices, lambda: ConcurrencyError(problem))
