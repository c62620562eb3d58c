"""A redis cache whose server goes away and comes back, for real.

The server is a redis-server of this module's own on a free port.  It is
running again after each test, so a ``clear_cache()`` elsewhere later in the
session still finds it, and it is stopped when the module's tests are done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from redis_servers import OwnServer, started_server
from store_helpers import REDIS_HOST, opero_warnings, store_warnings

from opero import opero
from opero.testing import FakeClock


@pytest.fixture(scope="module")
def own_server_process() -> Iterator[OwnServer]:
    with started_server() as server:
        yield server


@pytest.fixture
def own_server(own_server_process: OwnServer) -> Iterator[OwnServer]:
    yield own_server_process
    if own_server_process.process is None:
        own_server_process.start()


def test_cache_survives_the_server_going_away_and_uses_it_again(
    own_server: OwnServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0

    @opero(
        cache=True,
        cache_backend="redis",
        cache_backend_config={"host": REDIS_HOST, "port": own_server.port, "db": 0},
    )
    def double(x: int) -> int:
        nonlocal runs
        runs += 1
        return 2 * x

    assert double(5) == 10
    assert double(5) == 10
    assert runs == 1
    own_server.stop()
    with caplog.at_level(logging.WARNING, logger="opero"):
        started = time.monotonic()
        for _ in range(4):
            assert double(5) == 10
        assert double.statistics().cache_errors == 1  # then cooling down: not asked
        clock.advance(1)  # past the first cool-down: the store is tried again, and fails
        assert double(5) == 10
        assert double(6) == 12
        elapsed = time.monotonic() - started
    assert runs == 7
    assert len(store_warnings(caplog, double)) == 1
    assert len(opero_warnings(caplog)) == 1
    stats = double.statistics()
    assert stats.cache_errors == 2
    assert stats.cache_hits == 1
    assert elapsed < 2.0  # a refused connection is not retried with backoff by redis-py

    own_server.start()  # empty: nothing survived the restart
    assert double(5) == 10  # still cooling down on the fake clock: not even asked
    assert runs == 8
    clock.advance(31)  # longer than the longest cool-down
    assert double(5) == 10  # asked again: a miss, and this time the write goes through
    assert runs == 9
    assert double(5) == 10
    assert runs == 9
    assert double.statistics().cache_hits == 2


def test_server_down_from_the_start(
    own_server: OwnServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    own_server.stop()
    runs = 0

    @opero(
        cache=True,
        cache_backend="redis",
        cache_backend_config={"url": f"redis://{REDIS_HOST}:{own_server.port}/1"},
    )
    async def fetch(x: int) -> int:
        nonlocal runs
        runs += 1
        return x + 1

    import asyncio  # noqa: PLC0415

    async def calls() -> list[int]:
        return [await fetch(1) for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="opero"):
        assert asyncio.run(calls()) == [2, 2, 2]
    assert runs == 3
    assert len(store_warnings(caplog, fetch)) == 1
    own_server.start()
    clock.advance(31)
    assert asyncio.run(calls()) == [2, 2, 2]
    assert runs == 4
    assert fetch.statistics().cache_hits == 2
