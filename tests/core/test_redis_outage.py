"""A redis cache whose server goes away and comes back, for real.

The server is a redis-server of this module's own on a free port.  It is
running again after each test, so a ``clear_cache()`` elsewhere later in the
session still finds it, and it is stopped when the module's tests are done.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from store_helpers import REDIS_HOST, answers, opero_warnings, store_warnings, unavailable

from opero import opero
from opero.testing import FakeClock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


class OwnServer:
    """A redis-server the tests stop and start on one port."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.executable, "--port", str(self.port), "--bind", REDIS_HOST),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def own_server_process() -> Iterator[OwnServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable("redis-server is not installed")
        raise AssertionError  # unreachable: unavailable() skips or fails
    server = OwnServer(executable)
    try:
        server.start()
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait(timeout=10)


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
