"""A redis-server of a test's own, on a free port, that the test may stop, start, freeze and thaw.

The shared server on 127.0.0.1:6379 must never be stopped or frozen: other tests
(and other people) use it.  Tests of outages start one of these instead.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from store_helpers import REDIS_HOST, answers, unavailable

__all__ = ["OwnServer", "free_port", "started_server"]


def free_port() -> int:
    """A TCP port nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


class OwnServer:
    """One redis-server process on one port, restartable on that same port."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def start(self) -> None:
        """Start it (empty: nothing is saved) and wait until it answers."""
        self.process = subprocess.Popen(
            [
                *(self.executable, "--port", str(self.port), "--bind", REDIS_HOST),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop it; connections are refused until :meth:`start`."""
        if self.process is not None:
            self.thaw()
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.process is not None and self.frozen:
            self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        """Whatever state it is in, end it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        self.frozen = False


@contextmanager
def started_server() -> Iterator[OwnServer]:
    """A started :class:`OwnServer`, killed afterwards (skipped without redis-server)."""
    executable = shutil.which("redis-server")
    if executable is None:
        unavailable("redis-server is not installed")
        raise AssertionError  # unreachable: unavailable() skips or fails
    server = OwnServer(executable)
    try:
        server.start()
        yield server
    finally:
        server.kill()
