"""The parent's side of the wire to worker processes (local or Dask): items out, batches in.

Items and the map's extra arguments leave as bytes (pickle when it can,
cloudpickle when it must), so an item that cannot be sent fails alone, here,
and never breaks its chunk.  Batches come back with the counts the worker's
pipeline made (``worker.py``), which are added to the mapped function's
statistics where they arrive.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opero.concurrency.chunks import Batch, Chunk
from opero.core import clock
from opero.core.correlation import correlation_id
from opero.exceptions import ConcurrencyError

if TYPE_CHECKING:
    from opero.concurrency.map_link import Link
    from opero.concurrency.plan import MapPlan
    from opero.concurrency.worker import Delta, WorkerSpec
    from opero.core.stats import Counters

__all__ = ["Shipment", "dumps"]

#: What a worker task is called with: ``(spec key, spec blob, packed items, packed extra,
#: link)``; the link is the map's wire and when the chunk was sent (``Link``).
Task = tuple[str, bytes, bytes, bytes, "Link"]


class Shipment:
    """One map's way to its workers: packs chunks into tasks, unpacks what comes back."""

    __slots__ = ("counters", "extra", "report", "spec", "wire")

    def __init__(
        self,
        plan: MapPlan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        report: Callable[[Batch], None],
    ) -> None:
        if plan.spec is None:  # pragma: no cover - process modes always have one
            msg = "a process or Dask map needs its WorkerSpec"
            raise TypeError(msg)
        self.spec: WorkerSpec = plan.spec
        self.counters: Counters = plan.pipeline.counters
        #: The map's extra arguments and the caller's correlation id, packed once for
        #: every chunk (a worker sets the id around each chunk's items).
        self.extra = dumps((args, kwargs, correlation_id()))
        #: How the workers reach this process's limiter or pause (``map_link.py``).
        self.wire = plan.link.wire() if plan.link is not None else None
        #: Takes the batch of an item that could not be packed.
        self.report = report

    def pack(self, chunk: Chunk) -> tuple[Chunk, Task] | None:
        """The chunk as it can be sent, and its task; None when none of its items can go.

        An item that cannot be pickled fails alone: its ``ConcurrencyError`` goes
        to ``report`` and the rest of the chunk is sent.
        """
        spec = self.spec
        link = (self.wire, clock.now())  # sent now: its first start was booked just before
        try:
            return chunk, (spec.key, spec.blob, dumps(chunk[1]), self.extra, link)
        except Exception:
            kept: tuple[list[int], list[Any]] = ([], [])
            for index, item in zip(*chunk, strict=True):
                try:
                    dumps(item)
                except Exception as exc:
                    problem = ConcurrencyError(
                        f"the item of type {type(item).__qualname__} could not be sent to a "
                        f"worker process ({type(exc).__name__})"
                    )
                    self.report(([index], [problem], [0]))
                else:
                    kept[0].append(index)
                    kept[1].append(item)
            if not kept[0]:
                return None
            return kept, (spec.key, spec.blob, dumps(kept[1]), self.extra, link)

    def unpack(self, payload: tuple[list[Any], list[int], Delta]) -> tuple[list[Any], list[int]]:
        """A chunk's ``(values, failed)``; its worker-side counts go to the statistics."""
        values, failed, delta = payload
        if delta is not None:  # counted where they happened, added here once per chunk
            self.counters.add_worker_counts(*delta)
        return values, failed

    def unpack_bytes(self, payload: bytes) -> tuple[list[Any], list[int]]:
        """:meth:`unpack` for a batch that arrives as the worker's bytes (local pools)."""
        return self.unpack(pickle.loads(payload))  # noqa: S301 - our worker's bytes


def dumps(value: Any) -> bytes:
    """pickle when it can (fast), cloudpickle when it must (lambdas, local classes)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle  # noqa: PLC0415

        packed: bytes = cloudpickle.dumps(value)
        return packed
