"""``mode="dask"``: the map's chunks go to a ``dask.distributed`` cluster.

The map loop in ``dispatch.py`` stays the same; only where a chunk runs
changes.  ``distributed``'s ``ClientExecutor`` hands back plain
``concurrent.futures`` futures, so deadlines, ordering and the progress bar
work exactly as with a local process pool.  Scheduling, moving data and
re-running the tasks of a worker that was lost are the cluster's job: a lost
worker's chunks are re-run elsewhere by the scheduler, and only a chunk that
kept killing its workers comes back as ``KilledWorker`` (see ``dispatch``).
"""

from __future__ import annotations

import threading
from typing import Any

from opero.exceptions import ConfigurationError

__all__ = ["client_for", "is_killed_worker", "require_distributed", "slots"]

_NO_CLIENT = (
    "mode='dask' found no Dask client. Start one before the map, e.g. "
    "`from distributed import Client; client = Client()` for a local cluster or "
    "`Client('tcp://scheduler-host:8786')` for a running one, or pass "
    "client=<Client or scheduler address> to @opmap"
)

#: Clients opened here for a scheduler address given as a string, by address.
_clients: dict[str, Any] = {}
_lock = threading.Lock()


def require_distributed() -> None:
    """Fail at decoration time, with the extra to install, when distributed is missing."""
    try:
        import distributed  # noqa: F401, PLC0415 - only to see that it is there
    except ImportError as exc:
        msg = "mode='dask' needs the dask extra: pip install 'opero[dask]'"
        raise ConfigurationError(msg) from exc


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
                known = _clients[client] = Client(client, set_as_default=False)  # type: ignore[no-untyped-call]
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
