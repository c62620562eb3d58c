"""How a process or Dask map's workers share its rate limit and its pause with the parent.

`MapLink` is the parent's half, one per mapped function, made on the first map
(and again in a forked child, which must not answer for its parent): a
`ScopeServer` when the function has a rate limit, else a `PauseCell` linked to
the function's ``PauseGate``.  What it sends with every chunk (`MapLink.wire`)
is small and plain; `attach` is the worker's half, which points the chunk's
pipeline at it before the chunk runs.  See ``scope_link.py`` for why.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline

__all__ = ["MapLink", "Wire", "attach"]

#: What a chunk carries: ``("server", (path, key))``, ``("cell", path)``, or None.
Wire = tuple[str, Any] | None


@final
class MapLink:
    """The parent's end of one mapped function's link to its workers (made when first used)."""

    __slots__ = ("_lock", "_pid", "_wire", "pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._lock = threading.Lock()
        self._pid = 0
        self._wire: Wire = None

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
        p = self.pipeline
        if p.limiter is not None:
            from opero.concurrency.scope_link import ScopeServer  # noqa: PLC0415

            return ("server", ScopeServer(p).address)
        from opero.concurrency.pause_cell import PauseCell  # noqa: PLC0415

        cell = PauseCell()
        p.gate.link = cell  # the parent's own gate reads the workers' pauses too
        return ("cell", cell.path)


def attach(p: Pipeline, wire: Wire) -> None:
    """In a worker: point the chunk's pipeline ``p`` at its map's parent (see `MapLink`)."""
    if wire is None:
        return
    kind, where = wire
    if kind == "server":
        from opero.concurrency.scope_link import RemoteLimit  # noqa: PLC0415

        if type(p.limiter) is RemoteLimit:
            p.limiter.address = where
        return
    from opero.concurrency.pause_cell import open_cell  # noqa: PLC0415
    from opero.core import clock  # noqa: PLC0415

    gate = p.gate
    gate.link = open_cell(where)
    gate.pull(clock.now())  # the shell's own check then holds the chunk's first items
