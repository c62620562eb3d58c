"""``mode="dask"``: the map's chunks go to a ``dask.distributed`` cluster.

The map loop stays the same; only where a chunk runs changes.  Chunks come
back as plain ``concurrent.futures`` futures (``ClusterTasks``), so ordering,
``imap`` and the progress bar work exactly as with a local process pool.
Scheduling, moving data and re-running the tasks of a worker that was lost
are the cluster's job; only a chunk that kept killing its workers comes back
as ``KilledWorker``, and the map then runs its items one at a time, alone, to
find the one responsible (``map_run``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any

from opero.exceptions import ConfigurationError

__all__ = ["ClusterTasks", "client_for", "is_killed_worker", "require_distributed", "slots"]

_NO_CLIENT = (
    "mode='dask' found no Dask client. Start one before the map, e.g. "
    "`from distributed import Client; client = Client()` for a local cluster or "
    "`Client('tcp://scheduler-host:8786')` for a running one, or pass "
    "client=<Client or scheduler address> to @opmap"
)

#: Clients opened here for a scheduler address given as a string, by address.
_clients: dict[str, Any] = {}
_lock = threading.Lock()
#: Reads finished tasks' results, away from the map loop's stack (see ``_fetch``).
_fetch_pool: ThreadPoolExecutor | None = None
#: In a forked child: the parent's clients and relay threads, kept and never used.
#: Their threads stayed in the parent; closing them here could wait for ever.
_inherited: list[Any] = []


def _forget_inherited() -> None:
    """In a forked child: start again with no clients, no relay threads and a free lock."""
    global _clients, _lock, _fetch_pool
    _inherited.append((_clients, _fetch_pool))
    _clients, _lock, _fetch_pool = {}, threading.Lock(), None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_inherited)


def require_distributed() -> None:
    """Fail at decoration time, with the extra to install, when distributed is missing."""
    import importlib.util  # noqa: PLC0415

    # Looked up, not imported: importing distributed takes about a second.
    if importlib.util.find_spec("distributed") is None:
        msg = "mode='dask' needs the dask extra: pip install 'opero[dask]'"
        raise ConfigurationError(msg)


def client_for(client: Any) -> Any:
    """The ``distributed.Client`` a map runs on, looked up when the map starts.

    Not at decoration time: a module decorates its functions on import, usually
    before the script has started its cluster.  Never a silent local fallback:
    with no client anywhere, the map fails with how to start one.
    """
    from distributed import Client, get_client  # noqa: PLC0415

    if client is None:
        try:
            return get_client()
        except ValueError:
            raise ConfigurationError(_NO_CLIENT) from None
    if isinstance(client, str):
        with _lock:
            known = _clients.get(client)
            if known is None or known.status in ("closing", "closed"):
                known = _clients[client] = Client(client, set_as_default=False)  # type: ignore[no-untyped-call,unused-ignore]
            return known
    if getattr(client, "status", None) in ("closing", "closed"):
        msg = "the Dask client given to @opmap is closed; pass an open Client"
        raise ConfigurationError(msg)
    return client


def slots(client: Any) -> int:
    """Threads across the cluster's workers now: how many chunks can run at once."""
    threads: int = sum(client.nthreads().values())
    return max(1, threads)


def is_killed_worker(error: BaseException) -> bool:
    """The scheduler gave up on a task whose every run took its worker down."""
    from distributed import KilledWorker  # noqa: PLC0415

    return isinstance(error, KilledWorker)


class ClusterTasks:
    """Submits chunks to a Dask cluster; each comes back as a ``concurrent.futures`` future.

    Plain futures let the map loop wait on a cluster exactly as on a local pool.
    ``distributed``'s own ``ClientExecutor`` is not used: a result lost with its
    worker and then re-run into ``KilledWorker`` escapes it and leaves the future
    unset for ever (the map would hang).  Here every outcome reaches the future,
    the chunk's payload is unpickled off the map's stack (see ``_fetch``), and
    the task is released as soon as its result is read, so a finished map holds
    nothing on the cluster that a lost worker could make it run again.
    """

    __slots__ = ("client",)

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` as one task; cancelling the returned future cancels the task."""
        task = self.client.submit(fn, *args, pure=False)  # pure=False: a rerun is a new run
        out: Future[Any] = Future()

        def relay(_: Any) -> None:  # on Dask's callback thread: hand over, never block it
            _fetchers().submit(_fetch, task, out)

        def drop(done: Future[Any]) -> None:
            if done.cancelled():
                task.cancel()

        out.add_done_callback(drop)
        task.add_done_callback(relay)
        return out


def _fetch(task: Any, out: Future[Any]) -> None:
    """Read a finished task into ``out``, then release it.

    Unpickled here, on a thread of its own, because importing ``distributed``
    makes tracebacks picklable (tblib), and tblib rebuilds a remote traceback on
    top of the stack that unpickles it: on the map loop's stack, each failed
    item's error would keep the loop, and its tasks, alive after the map.
    """
    try:
        if out.done():
            return  # cancelled by the map
        try:
            outcome: Any = pickle.loads(task.result())  # noqa: S301 - our worker's bytes
        except BaseException as exc:  # KilledWorker, a cancelled task, a lost client
            with contextlib.suppress(InvalidStateError):
                out.set_exception(exc)
        else:
            with contextlib.suppress(InvalidStateError):
                out.set_result(outcome)
    finally:
        task.release()


def _fetchers() -> ThreadPoolExecutor:
    global _fetch_pool  # noqa: PLW0603 - created with the first Dask map
    with _lock:
        if _fetch_pool is None:
            _fetch_pool = ThreadPoolExecutor(4, thread_name_prefix="opero-dask-fetch")
        return _fetch_pool
