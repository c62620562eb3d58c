"""Hands a map's results out in the caller's order and keeps its progress meter."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opero.concurrency.pool import Batch
from opero.concurrency.progress import Meter, Progress, meter

__all__ = ["Collector"]


class Collector:
    """Puts batches in the caller's order and keeps the progress meter (items, failures).

    Works a chunk at a time, not an item at a time: for 20,000 trivial items
    the per-item bookkeeping would cost more than the items themselves.
    """

    __slots__ = ("buffer", "meter", "next_index", "ordered", "waiting_count")

    def __init__(self, progress: Progress | None, items: Iterable[Any], *, ordered: bool) -> None:
        self.ordered = ordered
        #: Waiting runs of values, by the index of their first item.
        self.buffer: dict[int, list[Any]] = {}
        self.next_index = 0
        self.waiting_count = 0
        #: A bar, a summary line, or None: see ``progress.py``.
        self.meter: Meter | None = None
        if progress is not None:
            total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
            self.meter = meter(progress, total)

    def add(self, batch: Batch) -> list[Any]:
        """The values that can be handed out now that ``batch`` is in.

        A batch's indices must be ascending (each producer sorts or builds them so):
        that is what lets one comparison tell a contiguous run from a scattered one.
        """
        indices, values, failed = batch
        if self.meter is not None:
            self.meter.advance(len(values), len(failed))
        if not self.ordered:
            return values
        if len(indices) == indices[-1] - indices[0] + 1:  # contiguous: one run
            self.buffer[indices[0]] = values
        else:
            for index, value in zip(indices, values, strict=True):
                self.buffer[index] = [value]
        self.waiting_count += len(values)
        buffer = self.buffer
        out = buffer.pop(self.next_index, None)
        if out is None:
            return []
        self.next_index += len(out)
        if self.next_index in buffer:  # a run that waited behind this one: join them
            out = out.copy()
            while self.next_index in buffer:
                run = buffer.pop(self.next_index)
                out.extend(run)
                self.next_index += len(run)
        self.waiting_count -= len(out)
        return out

    def waiting(self) -> int:
        """Results held back until an earlier item finishes."""
        return self.waiting_count

    def close(self) -> None:
        """End the meter, if any: the bar's last frame, or the summary line."""
        if self.meter is not None:
            self.meter.close()
