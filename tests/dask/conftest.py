"""Fixtures for the ``mode="dask"`` tests: a real local Dask cluster, redis, idle workers.

One ``LocalCluster`` (2 worker processes, 1 thread each) serves the whole
session; tests that kill workers get a cluster of their own.  The session
client is *not* the default client: a test that wants ``client=None`` to find
it makes it current for itself, so the no-client behaviour can be tested and
nothing else in the session sees a default Dask client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dask_helpers import REDIS_HOST, REDIS_PORT, wait_idle

from redis_server import require_redis

CLUSTER_OPTIONS: dict[str, Any] = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "dashboard_address": None,
    # No dashboard, but the scheduler still serves /health and /metrics over HTTP, by
    # default on port 8787: a second cluster (the tests that kill workers) would find it
    # taken and warn.  Any free port instead.
    "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
}


def start_cluster() -> tuple[Any, Any]:
    """A fresh 2-worker LocalCluster and a (non-default) Client on it."""
    from distributed import Client, LocalCluster  # noqa: PLC0415

    cluster = LocalCluster(**CLUSTER_OPTIONS)
    client = Client(cluster, set_as_default=False)
    return cluster, client


def stop_cluster(cluster: Any, client: Any) -> None:
    client.close()
    cluster.close()


@pytest.fixture(scope="session")
def dask_cluster_and_client() -> Iterator[tuple[Any, Any]]:
    pytest.importorskip("distributed")
    cluster, client = start_cluster()
    yield cluster, client
    stop_cluster(cluster, client)


@pytest.fixture
def dask_cluster(dask_cluster_and_client: tuple[Any, Any]) -> Any:
    return dask_cluster_and_client[0]


@pytest.fixture
def dask_client(dask_cluster_and_client: tuple[Any, Any]) -> Any:
    """The session's client, with both workers up and no thread busy with an earlier test."""
    client = dask_cluster_and_client[1]
    client.wait_for_workers(2, timeout=30)
    wait_idle(client)
    return client


@pytest.fixture
def private_cluster() -> Iterator[tuple[Any, Any]]:
    """A cluster of this test's own, for tests that kill workers."""
    pytest.importorskip("distributed")
    cluster, client = start_cluster()
    client.wait_for_workers(2, timeout=30)
    yield cluster, client
    stop_cluster(cluster, client)


@pytest.fixture
def one_death_cluster() -> Iterator[tuple[Any, Any]]:
    """A cluster of this test's own whose scheduler gives up on a task after one death.

    For an item that kills every worker it lands on: each extra death is a chance
    for distributed's nanny to miss a restart (a worker that dies while its nanny is
    still starting it is not restarted), and a cluster that has lost every worker
    holds its queued tasks for ever.  One death per task keeps the test about opero.
    """
    pytest.importorskip("distributed")
    import dask  # noqa: PLC0415

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster, client = start_cluster()
    client.wait_for_workers(2, timeout=30)
    yield cluster, client
    stop_cluster(cluster, client)


# -- redis ---------------------------------------------------------------------------------
@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A cache namespace no other test uses, in redis db 9; its keys are deleted afterwards."""
    require_redis(REDIS_HOST, REDIS_PORT)
    import redis  # noqa: PLC0415
    from dask_helpers import REDIS_DB  # noqa: PLC0415

    namespace = f"dask{uuid.uuid4().hex}"
    yield namespace
    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=2.0)
    try:
        keys = list(admin.scan_iter(match=f"opero:*{namespace}*", count=1000))
        if keys:
            admin.delete(*keys)
    finally:
        admin.close()
