"""What runs inside a process worker (or on a Dask worker): one chunk at a time.

Workers receive the function once per chunk as cloudpickle bytes (so closures,
lambdas and ``__main__`` functions work) and keep the rebuilt per-item
pipeline, keyed by a digest of those bytes.  Results travel back pickled by the
worker itself, so a result that cannot be pickled becomes that item's
``ConcurrencyError`` instead of breaking the map.  With them travel the
counts the chunk's retries and fallbacks made (once per chunk, not per item),
which the parent adds to the mapped function's statistics.  Each chunk also
carries its map's link (``map_link.py``): every start and every server's pause
in the worker goes through the parent's limiter, or the pause shared with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from typing import TYPE_CHECKING, Any

from opero.concurrency.items import run_async_chunk, run_sync_chunk
from opero.concurrency.map_link import Link, attach
from opero.core import correlation
from opero.core.deadline import backstop_grace
from opero.exceptions import ConcurrencyError, DeadlineExceeded

if TYPE_CHECKING:
    from opero.core.shell import Shell

__all__ = [
    "Delta",
    "WorkerSpec",
    "prepare_worker",
    "run_chunk_in_worker",
    "run_chunk_with_deadline",
]

#: What a chunk's pipeline counted in the worker: ``(retries, fallbacks, failures, waited)``,
#: or None when it counted nothing (the usual case: no retry, no fallback, no failure).
Delta = tuple[int, int, int, float] | None


class WorkerSpec:
    """What a process worker needs to rebuild the per-item pipeline: cloudpickle bytes, digest."""

    __slots__ = ("blob", "key")

    def __init__(self, payload: Any) -> None:
        import cloudpickle  # noqa: PLC0415 - process modes only

        #: The function and its retry/fallback settings, by value.
        self.blob: bytes = cloudpickle.dumps(payload)
        #: Names the rebuilt pipeline in each worker's memory.
        self.key = hashlib.sha256(self.blob).hexdigest()


#: In each worker process: rebuilt per-item callables not in use now, by WorkerSpec.key.
#: A chunk takes one for itself, so the counts it reads before and after are its own
#: even when a Dask worker runs several chunks (of several maps) at once.
_IDLE_CALLS: dict[str, list[Shell]] = {}


def run_chunk_in_worker(
    key: str, blob: bytes, packed_items: bytes, extra: bytes, link: Link | None = None
) -> bytes:
    """Run in a worker process: the chunk's ``(values, failed positions, Delta)``, pickled here.

    Items arrive pickled by the parent (cloudpickle when plain pickle cannot),
    so lambdas and local classes can be items too.  ``link``: how this worker
    reaches the map's limiter and pause (``map_link.py``).
    """
    import pickle  # noqa: PLC0415

    items = pickle.loads(packed_items)  # noqa: S301 - our own bytes, from the parent
    idle = _IDLE_CALLS.setdefault(key, [])
    try:
        call = idle.pop()  # atomic: no two chunks get the same one
    except IndexError:
        build = pickle.loads(blob)  # noqa: S301 - our own bytes, from the parent
        call = build()
    args, kwargs, carried = _extra(extra)
    if link is not None:
        attach(call.pipeline, link)  # every start and pause through the map's parent
    before = call.tally()
    token = correlation.enter(carried)  # the caller's id, for the items' logs and errors
    try:
        if call.is_async:
            import asyncio  # noqa: PLC0415

            values, failed = asyncio.run(run_async_chunk(call, items, args, kwargs))
        else:
            values, failed, _ = run_sync_chunk(call, items, args, kwargs)
        delta = _delta(before, call.tally())
    finally:
        correlation.leave(token)
        idle.append(call)
    return _pack(values, failed, delta)


def _extra(extra: bytes) -> tuple[tuple[Any, ...], dict[str, Any], str | None]:
    """The map's ``(args, kwargs, correlation id)`` (a chunk packed without an id: None)."""
    import pickle  # noqa: PLC0415

    args, kwargs, *carried = pickle.loads(extra)  # noqa: S301 - our own bytes, from the parent
    return args, kwargs, carried[0] if carried else None


def prepare_worker(key: str, blob: bytes, linger: float) -> int:
    """Run in a new worker: build the map's pipeline now, not with its first item; the pid.

    ``linger`` keeps this worker busy a moment, so the next such task lands on another.
    """
    import pickle  # noqa: PLC0415
    import time  # noqa: PLC0415

    idle = _IDLE_CALLS.setdefault(key, [])
    if not idle:
        # A pipeline that cannot be built here fails each item when it runs, not the pool.
        with contextlib.suppress(Exception):
            idle.append(pickle.loads(blob)())  # noqa: S301 - our own bytes, from the parent
    time.sleep(linger)
    return os.getpid()


def _delta(before: Any, after: tuple[int, int, int, float]) -> Delta:
    """What the pipeline counted between two tallies, or None for nothing."""
    if after == before:
        return None
    retries, fallbacks, failures, waited = after
    return (retries - before[0], fallbacks - before[1], failures - before[2], waited - before[3])


def run_chunk_with_deadline(  # noqa: PLR0917 - a task's fields, in its order
    key: str, blob: bytes, packed_items: bytes, extra: bytes, timeout: float, link: Link | None
) -> bytes:
    """Run on a Dask worker: the chunk, given ``timeout`` seconds from when it starts here.

    The submitting process cannot tell when a task leaves the scheduler's queue,
    so the deadline is kept where the item runs.  A thread cannot be stopped:
    a late item goes on in a daemon thread whose result is dropped, and the
    worker's own thread is freed for the items queued behind it.
    """
    outcome: list[bytes] = []
    problem: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(run_chunk_in_worker(key, blob, packed_items, extra, link))
        except BaseException as exc:  # handed to the worker's thread below
            problem.append(exc)

    runner = threading.Thread(target=run, name="opero-deadline", daemon=True)
    runner.start()
    runner.join(timeout + backstop_grace(timeout))  # the item's engine ends it first
    if problem:
        raise problem[0]
    if outcome:
        return outcome[0]
    import pickle  # noqa: PLC0415

    count = len(pickle.loads(packed_items))  # noqa: S301 - our own bytes, from the parent
    message, carried = f"item did not finish within {timeout} s", _extra(extra)[2]
    late = [DeadlineExceeded(message, correlation_id=carried) for _ in range(count)]
    # What the late items go on to count is dropped with their results.
    return _pack(late, list(range(count)), None)


def _pack(values: list[Any], failed: list[int], delta: Delta) -> bytes:
    """Pickle a batch; a value that cannot be pickled becomes a ConcurrencyError in its slot."""
    import pickle  # noqa: PLC0415

    import cloudpickle  # noqa: PLC0415

    # An exception may pickle yet fail to rebuild (a custom __init__): check the
    # failed ones here, so the parent never meets a batch it cannot load.
    if failed and not all(_rebuilds(values[position]) for position in failed):
        bad = set(failed)
        safe = [
            value if position not in bad or _rebuilds(value) else _unsendable(value, True, None)
            for position, value in enumerate(values)
        ]
        values = safe
    try:  # plain pickle first: C-fast for ordinary data; cloudpickle for lambdas and the like
        packed: bytes = pickle.dumps((values, failed, delta), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        packed = b""
    if packed:
        return packed
    try:
        packed = cloudpickle.dumps((values, failed, delta))
    except Exception:
        bad = set(failed)
        safe = [_sendable(value, position in bad) for position, value in enumerate(values)]
        still = sorted(
            bad
            | {p for p, (was, now) in enumerate(zip(values, safe, strict=True)) if was is not now}
        )
        packed = cloudpickle.dumps((safe, still, delta))
    return packed


def _rebuilds(value: Any) -> bool:
    import pickle  # noqa: PLC0415

    import cloudpickle  # noqa: PLC0415

    try:
        pickle.loads(cloudpickle.dumps(value))  # noqa: S301 - bytes made just here
    except Exception:
        return False
    return True


def _unsendable(value: Any, is_error: bool, exc: BaseException | None) -> ConcurrencyError:
    what = "exception" if is_error else "result"
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return ConcurrencyError(
        f"the {what} of type {type(value).__qualname__} could not be sent back from "
        f"the worker process{why}"
    )


def _sendable(value: Any, is_error: bool) -> Any:
    """``value`` itself if it pickles, else a ConcurrencyError naming its type."""
    import cloudpickle  # noqa: PLC0415

    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        return _unsendable(value, is_error, exc)
    return value
