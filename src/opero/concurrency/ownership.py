"""Which process owns what: a forked child's inherited state, and workers without an owner.

A pool belongs to the process that made it.  ``os.fork()`` copies the parent's
bookkeeping but none of its threads or child processes.  Two pieces of that
copy make a child's own process pool fail:

- ``multiprocessing.process._children`` still lists the parent's pool workers,
  so at exit the child tries to join processes that are not its own
  (``AssertionError: can only join a child process``) and may read their
  sentinels;
- the forkserver singleton still names the parent's server, and starting a
  worker asks ``waitpid`` about a process that is not the child's
  (``ChildProcessError``).

Both are put right here, in the child only, without signalling, joining or
closing anything that the parent still uses.

The other way round, a pool's workers must not outlive the process that owns
them: ``concurrent.futures`` workers wait on their queue for ever when the owner
ends without shutting the pool down (``os._exit`` in a forked child, SIGKILL),
so each worker watches its owner and exits when it is gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["disown_workers", "forget_forkserver", "watch_owner"]


def disown_workers(processes: Iterable[Any]) -> None:
    """Take the parent's worker processes off this child's list of its children."""
    module = sys.modules.get("multiprocessing.process")
    children = getattr(module, "_children", None)
    if isinstance(children, set):
        children.difference_update(processes)


def forget_forkserver() -> None:
    """Make this child start its own forkserver when it needs one.

    The parent's server stays the parent's: the child closes only its own copy
    of the descriptor that keeps that server alive.
    """
    module = sys.modules.get("multiprocessing.forkserver")
    server = getattr(module, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return  # never started, or started by this process after the fork
    alive = server._forkserver_alive_fd
    if alive is not None:
        with contextlib.suppress(OSError):
            os.close(alive)
    server._forkserver_address = None
    server._forkserver_alive_fd = None
    server._forkserver_pid = None
    server._inherited_fds = None
    if hasattr(server, "_forkserver_authkey"):  # Python 3.14+: the parent's server's key
        server._forkserver_authkey = None
    server._lock = threading.Lock()


def watch_owner(owner: int) -> None:
    """Run in each new pool worker: end this worker when process ``owner`` is gone."""
    watcher = threading.Thread(target=_exit_after, args=(owner,), name="opero-owner", daemon=True)
    watcher.start()


def _exit_after(owner: int) -> None:
    try:  # Linux: a descriptor that becomes readable when the owner exits, no polling
        handle = os.pidfd_open(owner)
    except (AttributeError, OSError):
        while _alive(owner):
            time.sleep(1.0)
    else:
        select.select([handle], [], [])
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists; this worker may not signal it
    return True
