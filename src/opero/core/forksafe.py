"""Locks that a forked child finds free.

``os.fork()`` copies a lock in whatever state it is in, but not the thread
that held it: a child forked while another thread of the parent held one of
opero's locks (a counter's, a limiter's, a cache's) would wait on it for
ever.  The standard library solves this for its own locks (``logging``,
``threading``) the same way: every lock made here is re-initialised in the
child, right after the fork, with ``_at_fork_reinit``.  Single-flight
computations in progress are the parent's too; their owners drop them (see
`on_fork`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["lock", "on_fork"]

_locks: weakref.WeakSet[Any] = weakref.WeakSet()
_hooks: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def lock() -> threading.Lock:
    """A ``threading.Lock`` that is free again in a forked child."""
    new = threading.Lock()
    _locks.add(new)
    return new


def on_fork(owner: Any, reset: Callable[[Any], None]) -> None:
    """Call ``reset(owner)`` in a forked child, for as long as ``owner`` lives."""
    _hooks[owner] = reset


def _after_fork_in_child() -> None:
    for held in list(_locks):
        held._at_fork_reinit()
    for owner, reset in list(_hooks.items()):
        reset(owner)


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
