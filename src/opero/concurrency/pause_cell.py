"""A server's pause shared by the processes of one map: eight bytes of shared memory.

A process or Dask map of a function without a rate limit holds a ``Retry-After``
in the function's ``PauseGate``; each worker has a gate of its own, so the gates
of the parent and of every worker are linked to one cell (``PauseGate.link``).
The worker that sees the refusal pushes the pause's end into the cell at once,
and every worker reads it before each run of items it starts (a memory read, no
system call), so the items already sent wait too.  Times are ``time.monotonic``
readings, one clock for every process of a machine (Linux, macOS).

The cell is a file mapped into memory (in ``/dev/shm`` where there is one).  It
is opened by its path, so it reaches processes of this machine only: a Dask
worker on another host finds no such file and keeps its pause to itself (one
WARNING).  The parent removes the file at exit.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
import tempfile
import threading
import weakref
from typing import final

__all__ = ["PauseCell", "open_cell"]

logger = logging.getLogger("opero")

_FORMAT = struct.Struct("d")


@final
class PauseCell:
    """The end of the map's pause, in shared memory; ``0.0`` when there is none."""

    __slots__ = ("__weakref__", "_lock", "_map", "path")

    def __init__(self, path: str | None = None) -> None:
        if path is None:  # a new cell, owned by this process (removed at exit)
            shm = "/dev/shm"  # noqa: S108 - a private file (mkstemp), shared by path on purpose
            directory = shm if os.path.isdir(shm) else None
            fd, path = tempfile.mkstemp(prefix="opero-pause-", dir=directory)
            os.ftruncate(fd, _FORMAT.size)
            weakref.finalize(self, _remove, path, os.getpid())
        else:
            fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _FORMAT.size)
        finally:
            os.close(fd)
        #: Where the cell lives: what a worker is sent to open it.
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> float:
        """The pause's end (clock time), or ``0.0``."""
        value: float = _FORMAT.unpack_from(self._map)[0]
        return value

    def push(self, until: float) -> None:
        """Let the pause last until ``until``, unless it already lasts longer.

        Two processes pushing at once may both write; the later end can lose to
        the earlier by the width of the race, never the pause itself.
        """
        with self._lock:
            if until > self.read():
                _FORMAT.pack_into(self._map, 0, until)


def _remove(path: str, owner: int) -> None:
    if os.getpid() != owner:  # a forked child leaves its parent's cell alone
        return
    with contextlib.suppress(OSError):
        os.unlink(path)


#: In each worker process: the cells opened so far, by path (None: cannot be opened here).
_OPENED: dict[str, PauseCell | None] = {}


def open_cell(path: str) -> PauseCell | None:
    """The map's cell in this process (opened once), or None where it cannot be reached."""
    try:
        return _OPENED[path]
    except KeyError:
        pass
    try:
        cell: PauseCell | None = PauseCell(path)
    except OSError:
        logger.warning(
            "opero: this worker cannot reach its map's pause (another host?); "
            "a server's Retry-After seen here holds this worker only"
        )
        cell = None
    _OPENED[path] = cell
    return cell
