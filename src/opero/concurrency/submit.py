"""The one protocol a map's backend implements, so the map loop never asks which it is.

Three submitters stand behind it: pool threads (``submit_threads.py``), local
worker processes (``submit_processes.py``) and a Dask cluster
(``submit_dask.py``).  The map run (``map_run.py``) sends chunks, collects
their batches, charges lost workers and fails late items the same way for all
three; what differs (where a chunk runs, what a broken future means, how a
stuck chunk is let go) is each submitter's own business.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol, final

from opero.concurrency.chunks import Chunk
from opero.core.frozen import Frozen

__all__ = ["Lost", "Submitter"]


@final
class Lost(Frozen):
    """What a chunk's failure means when it went down with its worker."""

    __slots__ = ("alone", "message", "tolerance")

    #: Nothing else of the map was in flight with it: the death is its own.
    alone: bool
    #: How many deaths of its own an item may cause before it is charged with one.
    tolerance: int
    #: The charged item's error message; ``{deaths}`` is replaced by the count.
    message: str

    def __init__(self, *, alone: bool, tolerance: int, message: str) -> None:
        self._init(alone=alone, tolerance=tolerance, message=message)


class Submitter(Protocol):
    """Where a map's chunks run: threads, local processes or a Dask cluster."""

    #: How many chunks can run at once.
    workers: int
    #: The most chunks in flight the backend wants, or None for the map's own choice.
    limit: int | None
    #: Seconds between looks at the deadlines while waiting (None: wait for a result).
    tick: float | None

    def submit(self, chunk: Chunk, *, alone: bool = False) -> tuple[Future[Any], Chunk] | None:
        """Send ``chunk``: its future and what of it was sent (None: nothing could be).

        ``alone``: nothing else of the map is in flight (a suspect after a death).
        """
        ...

    def result(self, future: Future[Any]) -> tuple[list[Any], list[int]]:
        """A finished chunk's ``(values, failed positions)``; raises what its future raised."""
        ...

    def broken(self, future: Future[Any], error: Exception) -> Lost | None:
        """What ``error`` from ``future`` means: a lost worker, or None (the pool failed it)."""
        ...

    def expire(
        self, in_flight: Mapping[Future[Any], Chunk], timeout: float
    ) -> tuple[list[Future[Any]], list[Future[Any]]]:
        """The chunks past their deadline, and the others that must be sent again.

        Letting a late chunk go is the backend's business (threads: fresh ones
        for the queued chunks; processes: a fresh pool for everything else).
        """
        ...

    def stop(self, in_flight: Iterable[Future[Any]], *, interrupted: bool) -> None:
        """Start nothing more; cancel what has not started (interrupted: kill what runs)."""
        ...
