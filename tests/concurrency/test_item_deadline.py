"""@opmap's per-item ``timeout=`` is that item's deadline, in every mode (CONTRACT 19, 30).

A timed-out item's entry is a ``DeadlineExceeded``: an ``AllFailedError`` that is also
the ``TimeoutError`` CONTRACT 19 promises.  Only one stuck item is mapped in the modes
that start processes, so a slow pool start can never make a quick item late; the
stuck item never returns within the test (it waits far beyond the timeout, or on an
event set afterwards).
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opero import AllFailedError, DeadlineExceeded, opmap

pytestmark = pytest.mark.timeout(90)

#: How long a stuck item in a process waits: far beyond its timeout (its worker goes).
STUCK = 20.0


def stuck(x: int) -> int:
    time.sleep(STUCK if x == 1 else 0)
    return x


async def astuck(x: int) -> int:
    await asyncio.sleep(STUCK if x == 1 else 0)
    return x


def assert_the_items_deadline(entry: object, timeout: float) -> None:
    assert type(entry) is DeadlineExceeded
    assert isinstance(entry, TimeoutError)
    assert isinstance(entry, AllFailedError)
    # The map's own cut, or the item's engine ending at the same deadline (it is the item's
    # deadline= too, CONTRACT 30), whichever came first; both are this DeadlineExceeded.
    text = str(entry)
    assert f"item did not finish within {timeout} s" in text or (
        f"the deadline of {timeout:g}s" in text
    ), text
    assert type(pickle.loads(pickle.dumps(entry))) is DeadlineExceeded


def test_thread_mode() -> None:
    release = threading.Event()

    @opmap(mode="thread", workers=2, timeout=0.2, progress=False)
    def work(x: int) -> int:
        if x == 1:
            release.wait(STUCK)
        return x

    try:
        results = work([0, 1, 2])
    finally:
        release.set()
    assert results[0] == 0
    assert results[2] == 2
    assert_the_items_deadline(results[1], 0.2)


def test_async_mode() -> None:
    mapped = opmap(mode="async", workers=2, timeout=0.2, progress=False)(astuck)

    async def main() -> list[Any]:
        return list(await mapped([0, 1, 2]))

    results = asyncio.run(main())
    assert results[0] == 0
    assert results[2] == 2
    assert_the_items_deadline(results[1], 0.2)


def test_process_mode() -> None:
    mapped = opmap(mode="process", workers=1, timeout=1.0, progress=False)(stuck)
    (entry,) = mapped([1])
    assert_the_items_deadline(entry, 1.0)


def test_async_process_mode() -> None:
    mapped = opmap(mode="async_process", workers=1, timeout=1.0, progress=False)(astuck)

    async def main() -> list[Any]:
        return list(await mapped([1]))

    (entry,) = asyncio.run(main())
    assert_the_items_deadline(entry, 1.0)


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_dask_mode(dask_client: Any) -> None:
    mapped = opmap(mode="dask", client=dask_client, timeout=1.0, progress=False)(stuck)
    (entry,) = mapped([1])
    assert_the_items_deadline(entry, 1.0)
