"""The thread on which an async caller's round trips to a key pool kept elsewhere are made.

A key pool whose state lives in redis (``breaker_backend="redis"``) or with a map's
parent (``opero.concurrency.pool_link``) is asked from the engine's `Remote` steps
(:mod:`opero.core.steps`).  The sync driver makes the round trip in the calling thread;
the async driver hands it to the pool's `Lane`, one dedicated thread, and awaits it, so
the event loop runs on meanwhile (a frozen redis holds the lane up to its socket
timeout, never the loop).

Why a thread and not redis's asyncio client (or asyncio streams to the parent): the
operation handed over is the engine's own rule (take a candidate and its budget slot,
settle an outcome, a circuit's acquire or record: ``opero.core.pool_flow``), which
asks the backend several times with decisions between; on the async client every one
of those rules, and each candidate operation under them, would be written a second
time as a coroutine.  One thread per link also keeps this process's operations on a
pool in the order they were made (an outcome lands before the next take), as the
one connection of a map's `Channel` needs anyway, and costs a thread hop (some tens
of us) next to a round trip of some 100 us.  The thread starts on the first async use.
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, final

from opero.core import forksafe

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Lane", "in_loop"]

logger = logging.getLogger("opero")


def in_loop() -> bool:
    """Whether this thread runs an event loop (an async caller: never block it)."""
    asyncio = sys.modules.get("asyncio")  # a running loop implies asyncio is loaded
    return asyncio is not None and asyncio._get_running_loop() is not None


@final
class Lane:
    """One thread making one link's round trips for async callers, in order."""

    __slots__ = ("__weakref__", "_executor", "_lock", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = forksafe.lock()
        forksafe.on_fork(self, Lane._forget)  # a forked child has none of the parent's threads

    def _forget(self) -> None:
        self._executor = None

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
        executor = self._executor
        if executor is None:
            with self._lock:
                executor = self._executor
                if executor is None:
                    executor = self._executor = ThreadPoolExecutor(
                        1, thread_name_prefix=f"opero-lane-{self.name}"
                    )
        return executor.submit(fn, *args)

    async def run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """``fn(*args)`` on the lane; its result, awaited without blocking the loop.

        Shielded: a cancelled caller stops waiting at once, but an operation handed
        over always runs (an outcome is never lost); a pick the caller no longer
        waits for is given back by the engine (`later`, which runs after it).
        """
        import asyncio  # noqa: PLC0415 - async callers only

        return await asyncio.shield(asyncio.wrap_future(self._submit(fn, args)))

    def later(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """``fn(*args)`` without waiting for it: on the lane (after everything handed to it
        so far) when called from a loop, else now, in this thread."""
        if in_loop():
            try:
                self._submit(fn, args).add_done_callback(_logged)
            except RuntimeError:  # the interpreter is shutting down: no new threads
                pass
            else:
                return
        fn(*args)


def _logged(future: Future[Any]) -> None:
    error = future.exception()
    if error is not None:  # nobody waits for it: say so rather than lose it
        logger.error("opero: a key pool's deferred round trip failed (%s)", type(error).__name__)
