"""How one chunk's items go through the per-item call, in a pool thread or a worker process.

Both kinds of worker run a chunk here, so both get the same fast path: when a
successful item needs nothing but the call itself (no cache, rate limit,
fallback or ``on_success``), the items go through the plain function with
``map``, in C, and only an item that raises continues in the pipeline's retry
loop.  For trivial items the Python loop around each call would cost more than
the work; this is what lets a thread map keep up with
``multiprocessing.pool.ThreadPool.map``.

A server's ``Retry-After`` seen by one item pauses the function (its
``PauseGate``), and every item waits it out before it starts: the per-item loop
through the shell's own check, the fast path at the start of each slice (one
test of a float, no clock read; a gate shared with other processes is read
there too).  A slice is one item once items take 2 ms or more, so only a run of
quicker items (at most some 16 ms of them) can finish after a pause began.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opero.concurrency.chunks import NOT_STARTED
from opero.core import clock
from opero.core.steps import Wait
from opero.exceptions import CancelledItemError

if TYPE_CHECKING:
    from opero.core.pipeline import Pipeline
    from opero.core.shell import Shell

__all__ = ["Pace", "run_async_chunk", "run_sync_chunk"]

#: A chunk's outcomes: ``(values, failed positions)``, each exception in its item's slot.
Outcomes = tuple[list[Any], list[int]]
#: With a stop flag, items go in slices that grow eightfold while one takes less than
#: this, so that a map the caller left stops within a slice (about 16 ms of work at
#: most, or one item), not at the end of the chunk, and trivial items pay ~5 slices.
_SLICE_SECONDS = 0.002


class Pace:
    """The slice size a map's chunks have learned, so each chunk does not learn it again.

    A chunk starts its slices at the size the map's earlier chunks ended with
    (shared by the map's threads; a lost update only costs a re-learn), so a
    map of trivial items pays one slice per chunk instead of five, and a slice
    stays about ``8 x _SLICE_SECONDS`` long at the pace of the map's items so far.
    """

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 1


def run_sync_chunk(
    shell: Shell,
    items: list[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    stop: threading.Event | None = None,
    *,
    should_process: Callable[[], object] | None = None,
    on_start: Callable[[int], object] | None = None,
    pace: Pace | None = None,
) -> tuple[list[Any], list[int], int]:
    """The chunk's ``(values, failed positions)``, and how many items ran the plain function.

    Those items passed no counter of the pipeline (the caller counts them, in
    one step).  Once ``stop`` is set, or ``should_process()`` returns false (which
    then sets ``stop`` for the map's other chunks too), the items not yet
    started come back as ``CancelledItemError``.  ``on_start(position)`` is
    called as each item starts (a thread map with a timeout notes the time).
    ``pace``: the map's learned slice size (see `Pace`); without it a chunk
    starts at one item.
    """
    direct, resume = shell.direct, shell.resume
    if direct is not None and resume is not None and should_process is None and on_start is None:
        one = functools.partial(_call_with, direct, args, kwargs) if args or kwargs else direct
        return _run_plain(
            one, resume, items, args, kwargs, stop=stop, pace=pace or Pace(), p=shell.pipeline
        )
    # The per-item loop (the one place it is written): each item through the whole call.
    call, gate = shell.call, shell.pipeline.gate
    values: list[Any] = []
    failed: list[int] = []
    for position, item in enumerate(items):
        if gate.link is not None:  # the shell's own check then sees the workers' pause
            gate.pull(clock.now())
        if (stop is not None and stop.is_set()) or (
            should_process is not None and not should_process()
        ):
            if stop is not None:
                stop.set()  # the map's other chunks stop without asking again
            _cancel_rest(values, failed, len(items))
            break
        if on_start is not None:
            on_start(position)
        try:
            values.append(call(item, *args, **kwargs))
        except Exception as exc:
            values.append(exc)
            failed.append(position)
    return values, failed, 0


def _run_plain(
    one: Callable[[Any], Any],
    resume: Callable[[BaseException, tuple[Any, ...], dict[str, Any]], Any],
    items: list[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    stop: threading.Event | None,
    pace: Pace,
    p: Pipeline,
) -> tuple[list[Any], list[int], int]:
    """The fast path: the items through ``one`` with C ``map``, slice by slice; an item that
    raises continues in the pipeline's failure path (``resume``), the rest go on in C.

    Each slice starts after the function's pause, if a server asked for one."""
    values: list[Any] = []
    failed: list[int] = []
    plain = 0  # items that went through ``one`` alone
    remaining = iter(items)
    total = len(items)
    gate = p.gate
    linked = gate.link is not None  # in a worker: slices, so another worker's pause holds here
    sliced = stop is not None or linked
    size = pace.size if sliced else total
    while len(values) < total:
        if stop is not None and stop.is_set():
            _cancel_rest(values, failed, total)
            break
        if linked:
            gate.pull(clock.now())
        if gate.until:
            _wait_out_pause(p)
        began, before = time.perf_counter(), len(values)
        try:
            # extend keeps what came before an error (CPython), so the item that
            # raised sits at len(values), and ``remaining`` is just past it.
            left = total - before
            values.extend(
                map(one, remaining if size >= left else itertools.islice(remaining, size))
            )
        except Exception as first:
            plain += len(values) - before
            position = len(values)
            try:
                values.append(resume(first, (items[position], *args), kwargs))
            except Exception as exc:
                values.append(exc)
                failed.append(position)
            continue
        except BaseException:
            plain += len(values) - before + 1  # the interrupted item had started
            raise
        plain += len(values) - before
        if sliced:  # slices of at most ~8 x _SLICE_SECONDS, or one item
            took = time.perf_counter() - began
            size = size * 8 if took < _SLICE_SECONDS else max(1, size // 2)
    if sliced:
        pace.size = size
    return values, failed, plain


def _wait_out_pause(p: Pipeline) -> None:
    """Wait until the function's pause ends (the plain path has no rate limit to ask)."""
    delay = p.gate.wait(clock.now())
    if delay > 0:
        Wait(delay, p.counters).sleep()


def _cancel_rest(values: list[Any], failed: list[int], total: int) -> None:
    for position in range(len(values), total):
        values.append(CancelledItemError(NOT_STARTED))
        failed.append(position)


def _call_with(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], item: Any
) -> Any:
    return func(item, *args, **kwargs)


async def run_async_chunk(
    shell: Shell, items: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Outcomes:
    """The chunk's items as tasks on this worker's loop, all at once."""
    import asyncio  # noqa: PLC0415

    call = shell.call

    async def one(item: Any) -> tuple[bool, Any]:
        try:
            return (True, await call(item, *args, **kwargs))
        except Exception as exc:
            return (False, exc)

    results = await asyncio.gather(*(one(item) for item in items))
    return [value for _, value in results], [i for i, (ok, _) in enumerate(results) if not ok]
