"""More concurrent calls than redis-py's connection pool holds: they wait, they do not fall back.

redis-py 8 caps a pool at 100 connections and, beyond that, raises
``MaxConnectionsError`` at once.  That is not an outage: a shared rate limit
that took it for one ran at twice its rate (each process's own schedule on top
of the shared one), and a redis cache stopped caching.  These tests run
against the real server on 127.0.0.1:6379 (database 9).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_servers import OwnServer, started_server
from store_helpers import REDIS_DB, REDIS_HOST, REDIS_PORT, opero_warnings

from opero import ConfigurationError, opero

CONFIG: dict[str, Any] = {"host": REDIS_HOST, "port": REDIS_PORT, "db": REDIS_DB}
#: Starts may come late on a loaded machine, never early; this much early is clock rounding.
EARLY = 0.002


@pytest.fixture
def scope(redis_admin: Any) -> Iterator[str]:
    """A shared rate-limit scope of this test only; its key is deleted afterwards."""
    name = f"test-pool-{uuid.uuid4().hex}"
    yield name
    redis_admin.delete(f"opero:ratelimit:{name}")


def assert_spaced(starts: list[float], begin: float, rate: float) -> None:
    """The k-th start (0-based) came no sooner than k / rate after the first could start."""
    for k, at in enumerate(sorted(starts)):
        assert at - begin >= k / rate - EARLY, (k, at - begin, k / rate)


def shared(scope: str, rate: float, **config: Any) -> Callable[..., Any]:
    """``@opero`` with a redis rate limit of ``rate`` per second in ``scope``."""
    return opero(
        rate_limit=rate,
        rate_limit_scope=scope,
        rate_limit_backend="redis",
        rate_limit_backend_config=CONFIG | config,
    )


def test_500_concurrent_async_calls_keep_the_shared_rate(
    scope: str, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []

    @shared(scope, 250)
    async def call(i: int) -> int:
        starts.append(time.monotonic())
        return i

    async def burst() -> tuple[float, list[int]]:
        begin = time.monotonic()
        return begin, await asyncio.gather(*(call(i) for i in range(500)))

    with caplog.at_level(logging.WARNING, logger="opero"):
        begin, results = asyncio.run(burst())
    assert results == list(range(500))
    assert opero_warnings(caplog) == []  # no fallback: a full pool is not an outage
    assert_spaced(starts, begin, 250)  # about 2 s; falling back made it about 1.6 s


def run_threads(count: int, calls_each: int, call: Callable[[], object]) -> float:
    """Start ``count`` threads together, each making ``calls_each`` calls; the start time."""
    gate = threading.Barrier(count + 1)

    def work() -> None:
        gate.wait(timeout=30)
        for _ in range(calls_each):
            call()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    gate.wait(timeout=30)
    begin = time.monotonic()
    for thread in threads:
        thread.join(timeout=60)
    return begin


@pytest.mark.parametrize("max_connections", [None, 8], ids=["default-pool", "pool-of-8"])
def test_64_threads_keep_the_shared_rate(
    max_connections: int | None, scope: str, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []
    config = {} if max_connections is None else {"max_connections": max_connections}

    @shared(scope, 200, **config)
    def call() -> None:
        starts.append(time.monotonic())

    with caplog.at_level(logging.WARNING, logger="opero"):
        begin = run_threads(64, 3, call)
    assert len(starts) == 192
    assert opero_warnings(caplog) == []  # 64 threads on 8 connections wait their turn
    assert_spaced(starts, begin, 200)


@pytest.fixture
def server() -> Iterator[OwnServer]:
    """A server of the test's own: another process's ``clear_cache()`` on the shared
    server's test database (other test runs) cannot empty it between two rounds."""
    with started_server() as started:
        yield started


@pytest.mark.parametrize("max_connections", [None, 2], ids=["default-pool", "pool-of-2"])
def test_redis_cache_keeps_caching_above_the_pool_size(
    max_connections: int | None, server: OwnServer, caplog: pytest.LogCaptureFixture
) -> None:
    """4 rounds of 200 concurrent calls over 10 keys compute each key once."""
    runs: list[int] = []
    config: dict[str, Any] = {"host": REDIS_HOST, "port": server.port}
    if max_connections is not None:
        config["max_connections"] = max_connections  # 200 tasks queue for 2 connections

    @opero(cache=True, cache_backend="redis", cache_backend_config=config)
    async def square(x: int) -> int:
        runs.append(x)
        await asyncio.sleep(0.01)
        return x * x

    async def rounds() -> None:
        for _ in range(4):
            results = await asyncio.gather(*(square(i % 10) for i in range(200)))
            assert results == [(i % 10) ** 2 for i in range(200)]

    with caplog.at_level(logging.WARNING, logger="opero"):
        asyncio.run(rounds())
    assert sorted(runs) == list(range(10))  # once per key, not once per key per round
    assert opero_warnings(caplog) == []
    assert square.statistics().cache_errors == 0


def test_concurrent_misses_of_one_key_send_one_read(
    server: OwnServer, caplog: pytest.LogCaptureFixture
) -> None:
    """200 tasks over 10 cold keys: 10 GETs, so the misses of a key arrive together.

    Replies to 200 separate reads are handled at scattered times while the loop
    opens connections; a task that handled its miss after its key had been
    computed and stored computed it again (11 to 20 runs in about one cold start
    in six, before reads were shared).
    """
    import redis  # noqa: PLC0415

    runs: list[int] = []

    @opero(
        cache=True,
        cache_backend="redis",
        cache_backend_config={"host": REDIS_HOST, "port": server.port},
    )
    async def square(x: int) -> int:
        runs.append(x)
        return x * x

    async def burst() -> None:
        await asyncio.gather(*(square(i % 10) for i in range(200)))

    admin = redis.Redis(host=REDIS_HOST, port=server.port)
    try:
        admin.config_resetstat()
        asyncio.run(burst())
        gets = admin.info("commandstats")["cmdstat_get"]["calls"]
    finally:
        admin.close()
    assert gets == 10
    assert sorted(runs) == list(range(10))


# --- the settings --------------------------------------------------------------------------

TIMEOUT_KEYS = ("socket_timeout", "socket_connect_timeout", "pool_timeout")


@pytest.mark.parametrize("key", [*TIMEOUT_KEYS, "max_connections"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "2", True, None, 10**400])
@pytest.mark.parametrize("parameter", ["cache_backend_config", "rate_limit_backend_config"])
def test_bad_connection_settings_name_the_key(parameter: str, key: str, value: object) -> None:
    if key == "max_connections" and isinstance(value, int) and value > 1:
        value = 1.5  # a huge pool is fine; a fractional one is not
    if parameter == "cache_backend_config":
        settings: dict[str, Any] = {"cache": True, "cache_backend": "redis"}
    else:
        settings = {
            "rate_limit": 1,
            "rate_limit_backend": "redis",
            "rate_limit_scope": f"bad-{uuid.uuid4().hex}",
        }
    settings[parameter] = CONFIG | {key: value}
    with pytest.raises(ConfigurationError, match=rf"{parameter}.*{key}") as caught:
        opero(**settings)(lambda: None)
    assert "accepted" in str(caught.value) or "must be" in str(caught.value)


@pytest.mark.parametrize("parameter", ["cache_backend_config", "rate_limit_backend_config"])
def test_good_connection_settings_reach_the_clients(parameter: str, scope: str) -> None:
    given = {
        "socket_timeout": 0.7,
        "socket_connect_timeout": 0.3,
        "pool_timeout": 1.5,
        "max_connections": 12,
    }
    func: Any
    if parameter == "cache_backend_config":
        func = opero(cache=True, cache_backend="redis", cache_backend_config=CONFIG | given)(
            lambda: None
        )
        client = func.__opero__.cache.store.client()
    else:
        func = shared(scope, 5, **given)(lambda: None)
        client = func.__opero__.limiter._client
    pool = client.connection_pool
    assert pool.max_connections == 12
    assert pool.timeout == 1.5
    assert pool.connection_kwargs["socket_timeout"] == 0.7
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.3
