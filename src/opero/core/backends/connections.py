"""One sqlite3 connection per thread, closed when that thread ends.

The disk and sqlite caches give each thread its own connection (a sqlite3
connection must not be used by two threads at once).  Kept in a bare
``threading.local``, as diskcache keeps it, a connection outlives its thread:
it sits in a reference cycle (its statement cache points back at it), so it is
only dropped by some later garbage collection, in whatever thread that runs,
still open.  Python 3.13 then warns ``ResourceWarning: unclosed database`` for
each one, and until then every ended thread holds open files (two per thread
for a WAL database).

Here each thread's connection has an *owner*, an object kept only in that
thread's locals.  When the thread ends its locals are freed at once (no cycle),
and the owner closes the connection.  The connections are opened with
``check_same_thread=False`` only so that this close, or :meth:`close_all`, may
happen in another thread: each connection is still used by one thread only.
:meth:`close_all` closes every thread's connection: the store's ``close()``,
a store that is dropped, and interpreter exit all call it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import final

__all__ = ["ThreadConnections"]

#: This process's id, kept up to date in a forked child (os.getpid() is a
#: system call, and get() is on every cache read's path).
_pid = os.getpid()


def _forked() -> None:
    global _pid  # noqa: PLW0603 - one value per process, set at fork
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forked)


@final
class _Owner:
    """Holds one thread's connection and closes it when that thread's locals go."""

    __slots__ = ("connection", "held", "pid")

    def __init__(self, connection: sqlite3.Connection, held: dict[int, sqlite3.Connection]) -> None:
        self.connection = connection
        #: The process that opened it: after a fork the child opens its own.
        self.pid = _pid
        #: Every open connection of the ThreadConnections, so close_all reaches it too.
        self.held = held
        held[id(self)] = connection

    def close(self) -> None:
        self.held.pop(id(self), None)
        self.connection.close()  # closing twice is harmless

    __del__ = close


@final
class ThreadConnections:
    """Per-thread connections made by ``connect`` and then prepared by ``setup``.

    ``setup`` runs after the connection is this thread's, so it may itself call
    :meth:`get` (diskcache's pragma reset does); if it fails the connection is
    closed and the error propagates.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        setup: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._local = threading.local()
        self._held: dict[int, sqlite3.Connection] = {}
        # Dropped without close_all(), or still open at exit: close them all then.
        # (The callback holds the dict, never self, so self can be collected.)
        weakref.finalize(self, _close_all, self._held)

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after a fork)."""
        owner: _Owner | None = getattr(self._local, "owner", None)
        if owner is not None and owner.pid == _pid:
            return owner.connection
        return self._new()

    def _new(self) -> sqlite3.Connection:
        connection = self._connect()
        # Replacing an owner inherited across a fork closes the parent's connection
        # in this process, as diskcache does.
        self._local.owner = _Owner(connection, self._held)
        if self._setup is not None:
            try:
                self._setup(connection)
            except BaseException:
                self.close_current()
                raise
        return connection

    def opened(self) -> bool:
        """Whether this thread holds a connection."""
        return getattr(self._local, "owner", None) is not None

    def close_current(self) -> None:
        """Close this thread's connection; the next :meth:`get` opens a new one."""
        owner: _Owner | None = self._local.__dict__.pop("owner", None)
        if owner is not None:
            owner.close()

    def close_all(self) -> None:
        """Close every thread's connection; each thread opens a new one on its next use.

        A call that another thread has in flight on its connection fails (the
        caches read that as a miss).
        """
        self._local = threading.local()
        _close_all(self._held)


def _close_all(held: dict[int, sqlite3.Connection]) -> None:
    while held:
        try:
            _, connection = held.popitem()
        except KeyError:  # emptied by an ending thread at the same moment
            break
        connection.close()
