"""Whether the test run's shared redis-server answers, and what a test does when it does not.

One check for every test directory: locally a test that needs redis is skipped with how to
start one; under ``CI=true`` (where ``.ci/run`` starts the server) it fails instead, so a
missing server can never turn the redis tests into silent skips.
"""

from __future__ import annotations

import os
import socket

import pytest

HOST = "127.0.0.1"
PORT = 6379


def redis_answers(host: str = HOST, port: int = PORT) -> bool:
    """A redis-server answers PING on ``host:port`` within half a second."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis(host: str = HOST, port: int = PORT) -> None:
    """Skip the calling test without a server (fail it under ``CI=true``)."""
    if redis_answers(host, port):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but no redis-server answers on {host}:{port}")
    pytest.skip(f"no redis-server on {host}:{port} (start one to run this test)")
