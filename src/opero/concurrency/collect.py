"""Hands a map's results out in the caller's order and keeps its progress bar."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from opero.concurrency.pool import Batch

__all__ = ["Collector"]


class Collector:
    """Puts batches in the caller's order and keeps the progress bar (items, failures).

    Works a chunk at a time, not an item at a time: for 20,000 trivial items
    the per-item bookkeeping would cost more than the items themselves.
    """

    __slots__ = ("bar", "buffer", "failures", "next_index", "ordered", "waiting_count")

    def __init__(self, progress: bool, items: Iterable[Any], *, ordered: bool) -> None:
        self.ordered = ordered
        #: Waiting runs of values, by the index of their first item.
        self.buffer: dict[int, list[Any]] = {}
        self.next_index = 0
        self.failures = 0
        self.waiting_count = 0
        self.bar: Any = None
        if progress:
            total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
            self.bar = _bar_class()(total=total, unit="item", mininterval=0.2)

    def add(self, batch: Batch) -> list[Any]:
        """The values that can be handed out now that ``batch`` is in.

        A batch's indices must be ascending (each producer sorts or builds them so):
        that is what lets one comparison tell a contiguous run from a scattered one.
        """
        indices, values, failed = batch
        if self.bar is not None:
            if failed:  # before the update, so the line it draws has the new count
                self.failures += len(failed)
                self.bar.set_postfix(failed=self.failures, refresh=False)
            self.bar.update(len(values))
        if not self.ordered:
            return values
        if len(indices) == indices[-1] - indices[0] + 1:  # contiguous: one run
            self.buffer[indices[0]] = values
        else:
            for index, value in zip(indices, values, strict=True):
                self.buffer[index] = [value]
        self.waiting_count += len(values)
        out: list[Any] = []
        while self.next_index in self.buffer:
            run = self.buffer.pop(self.next_index)
            out.extend(run)
            self.next_index += len(run)
        self.waiting_count -= len(out)
        return out

    def waiting(self) -> int:
        """Results held back until an earlier item finishes."""
        return self.waiting_count

    def close(self) -> None:
        """Close the bar, if any."""
        if self.bar is not None:
            self.bar.close()


@functools.cache
def _bar_class() -> Any:
    """tqdm.auto's bar (a widget in notebooks) without the monitor thread each bar would start.

    Updates come once per chunk, so the bar needs no watchdog to stay fresh, and
    a thread started and joined per map would cost more than the updates.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415 - only when a bar is wanted

    return type("OperoBar", (tqdm,), {"monitor_interval": 0})
