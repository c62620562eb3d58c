"""How a process or Dask map's workers share its rate limit and its pause with the parent.

`MapLink` is the parent's half, one per mapped function, made on the first map
(and again in a forked child, which must not answer for its parent): a
`PauseCell` for a server's pause, and a `ScopeServer` when the function has a
rate limit (else the cell is linked to the function's ``PauseGate``), a key pool
or a ``circuit_breaker=`` that the parent holds for the workers (``pool_link.py``).  What it
sends with every chunk (`MapLink.wire`) is small and plain; `attach` is the
worker's half, which points the chunk's pipeline at it before the chunk runs.
See ``scope_link.py`` for why.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline

__all__ = ["LATE", "Link", "MapLink", "Wire", "attach"]

#: What every chunk of a map carries: ``("server", cell path, (socket path, key))`` when the
#: function has a rate limit, ``("cell", cell path, (socket path, key) or None)`` when it has
#: not (the address then serves its key pool and circuit breaker, if any), or None.
Wire = tuple[str, str, Any] | None
#: A chunk's link: the map's wire, and when the parent sent it (clock time).
Link = tuple[Wire, float]
#: A rate-limited item that starts later than this after it was sent (it waited for a busy
#: worker) books a fresh slot: the one booked when it was sent has passed unused, and
#: starting now would crowd the starts booked since.
LATE = 0.01


@final
class MapLink:
    """The parent's end of one mapped function's link to its workers (made when first used)."""

    __slots__ = ("_cell", "_lock", "_pid", "_server", "_wire", "pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._lock = threading.Lock()
        self._pid = 0
        self._wire: Wire = None
        # Kept alive with the link: a cell removes its file once collected, and the
        # workers open it by path (dropped at once, the file was gone before any worker
        # came to open it, so a pause never reached the first attempts already sent).
        self._cell: Any = None
        self._server: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        # A mapped function travels (cloudpickle, by value from __main__) with a fresh link:
        # the socket and the cell belong to this process, and a lock does not pickle.
        return (MapLink, (self.pipeline,))

    def wire(self) -> Wire:
        """What each chunk is sent with, so its worker reaches this process."""
        if self._pid == os.getpid():
            return self._wire
        with self._lock:
            if self._pid != os.getpid():
                self._wire = self._open()
                self._pid = os.getpid()
        return self._wire

    def _open(self) -> Wire:
        from opero.concurrency.pause_cell import PauseCell  # noqa: PLC0415
        from opero.concurrency.pool_link import held_by_parent  # noqa: PLC0415

        p = self.pipeline
        cell = self._cell = PauseCell()
        address = None
        if p.limiter is not None or held_by_parent(p):
            from opero.concurrency.scope_link import ScopeServer  # noqa: PLC0415

            self._server = ScopeServer(p)
            address = self._server.address
        if p.limiter is not None:
            return ("server", cell.path, address)
        p.gate.link = cell  # the parent's own gate reads the workers' pauses too
        return ("cell", cell.path, address)


def attach(p: Pipeline, link: Link) -> None:
    """In a worker: point the chunk's pipeline ``p`` at its map's parent (see `MapLink`)."""
    wire, sent_at = link
    if wire is None:
        return
    from opero.concurrency.pause_cell import open_cell  # noqa: PLC0415
    from opero.concurrency.pool_link import channel_of  # noqa: PLC0415
    from opero.core import clock  # noqa: PLC0415

    kind, cell, address = wire
    channel = channel_of(p)
    if channel is not None:
        channel.address = address
    if kind == "server":
        from opero.concurrency.scope_link import RemoteLimit  # noqa: PLC0415

        limiter = p.limiter
        if type(limiter) is RemoteLimit:
            limiter.cell = open_cell(cell)
            p.gate.held_link = limiter.cell  # a slot waited for still yields to the pause
            # The chunk's one item: the parent booked its first start as it sent it.
            # Late by under half an interval, it keeps its slot: no 1-s window gains a start
            # (a Dask task often starts tens of ms after it is sent; booking afresh then
            # spent two slots per item and halved the rate).
            limiter.prepaid = clock.now() - sent_at <= max(LATE, 0.5 / limiter.rate)
        return

    gate = p.gate
    gate.link = open_cell(cell)
    gate.pull(clock.now())  # the shell's own check then holds the chunk's first items
