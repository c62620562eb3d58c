"""``mode="dask"``: chunks run as tasks on a ``dask.distributed`` cluster.

Scheduling and lost workers are the cluster's job: it runs a lost worker's
tasks again elsewhere.  Only a task that kept killing its workers comes back,
as ``KilledWorker``; tasks share workers, so a task in company may have died
for a neighbour.  Its items are then run again one at a time with nothing else
of the map in flight, and only an item that still kills its workers alone is
charged.  Deadlines are kept on the workers (``run_chunk_with_deadline``): the
parent cannot tell when a task leaves the scheduler's queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from opero.concurrency import cluster
from opero.concurrency.submit import Lost
from opero.concurrency.worker import run_chunk_in_worker, run_chunk_with_deadline

if TYPE_CHECKING:
    from opero.concurrency.chunks import Chunk
    from opero.concurrency.plan import MapPlan
    from opero.concurrency.shipping import Shipment

__all__ = ["DaskSubmitter"]

_KILLED = "the item's task killed every Dask worker that ran it (KilledWorker)"


class DaskSubmitter:
    """Sends a Dask map's chunks to the cluster (see `Submitter`)."""

    __slots__ = ("limit", "lone", "shipment", "tasks", "tick", "timeout", "workers")

    def __init__(self, plan: MapPlan, shipment: Shipment) -> None:
        client = cluster.client_for(plan.client)
        self.tasks = cluster.ClusterTasks(client)
        self.shipment = shipment
        self.timeout = plan.timeout
        self.workers = plan.workers or cluster.slots(client)
        #: The cluster queues what it is given: with workers= send only what may run.
        self.limit: int | None = plan.workers or None
        self.tick: float | None = None
        #: The suspects' tasks, each sent with nothing else of the map in flight.
        self.lone: set[Future[Any]] = set()

    def submit(self, chunk: Chunk, *, alone: bool = False) -> tuple[Future[Any], Chunk] | None:
        packed = self.shipment.pack(chunk)
        if packed is None:
            return None
        chunk, task = packed
        future = (
            self.tasks.submit(run_chunk_in_worker, *task)
            if self.timeout is None  # else the worker keeps the deadline, from the start
            else self.tasks.submit(run_chunk_with_deadline, *task[:4], self.timeout, task[4])
        )
        if alone:
            self.lone.add(future)
        return future, chunk

    def result(self, future: Future[Any]) -> tuple[list[Any], list[int]]:
        payload = future.result()  # unpickled where it was fetched (cluster._fetch)
        self.lone.discard(future)  # (not before: ``broken`` asks whether it ran alone)
        return self.shipment.unpack(payload)

    def broken(self, future: Future[Any], error: Exception) -> Lost | None:
        alone = future in self.lone
        self.lone.discard(future)
        if not cluster.is_killed_worker(error):
            return None
        # The cluster already ran it on other workers: one death alone is the item's own.
        return Lost(alone=alone, tolerance=0, message=_KILLED)

    def expire(
        self, in_flight: Mapping[Future[Any], Chunk], timeout: float
    ) -> tuple[list[Future[Any]], list[Future[Any]]]:
        return [], []  # the workers keep the deadlines

    def stop(self, in_flight: Iterable[Future[Any]], *, interrupted: bool) -> None:
        for future in in_flight:
            future.cancel()
