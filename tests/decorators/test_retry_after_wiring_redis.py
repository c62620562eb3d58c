"""A server's Retry-After pauses a redis rate-limit scope: every function in the group waits.

Real time, short (a 0.4 s pause), against the shared redis-server on 127.0.0.1:6379
(db 9, a fresh group name per test); the pause itself is tested in
``tests/core/test_scope_pause_redis.py``, here it is the call engine that sets it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from opero import AllFailedError, opero
from redis_server import require_redis

CONFIG = {"host": "127.0.0.1", "port": 6379, "db": 9}
PAUSE = 0.4


@pytest.fixture(autouse=True)
def _needs_redis() -> None:
    require_redis()


class TooManyRequests(Exception):
    retry_after = PAUSE


def test_a_429_pauses_every_function_of_a_redis_group_threads() -> None:
    group = f"test-pause-{uuid.uuid4()}"
    settings = {
        "retries": 0,
        "rate_limit": 1000,
        "rate_limit_burst": 50,
        "rate_limit_scope": group,
        "rate_limit_backend": "redis",
        "rate_limit_backend_config": CONFIG,
    }

    @opero(**settings)
    def refused() -> None:
        raise TooManyRequests("429")

    starts: list[float] = []

    @opero(**settings)
    def other(i: int) -> int:
        starts.append(time.monotonic())
        return i

    begin = time.monotonic()
    with pytest.raises(AllFailedError):
        refused()
    threads = [threading.Thread(target=other, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(starts) == 10
    assert min(starts) - begin >= PAUSE - 0.02  # a little slack for redis' own clock


def test_a_429_pauses_every_function_of_a_redis_group_tasks() -> None:
    group = f"test-pause-{uuid.uuid4()}"
    settings = {
        "retries": 0,
        "rate_limit": 1000,
        "rate_limit_burst": 50,
        "rate_limit_scope": group,
        "rate_limit_backend": "redis",
        "rate_limit_backend_config": CONFIG,
    }

    @opero(**settings)
    async def refused() -> None:
        raise TooManyRequests("429")

    starts: list[float] = []

    @opero(**settings)
    async def other(i: int) -> int:
        starts.append(time.monotonic())
        return i

    async def main() -> float:
        begin = time.monotonic()
        with pytest.raises(AllFailedError):
            await refused()
        await asyncio.gather(*(other(i) for i in range(10)))
        return begin

    begin = asyncio.run(main())
    assert len(starts) == 10
    assert min(starts) - begin >= PAUSE - 0.02
