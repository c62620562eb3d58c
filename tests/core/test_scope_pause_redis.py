"""Pausing a shared (redis) rate-limit scope: every process sharing it waits the pause out.

Against the real redis-server on 127.0.0.1:6379 (database 9), except the outage
tests, which use a port nothing listens on or a server of their own.  Two
limiters with one scope name are two processes' views of it; one test uses a
real second process.  A delay the server computes is measured from when the
server ran the script, so each check allows for the time the test took since.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_servers import OwnServer, free_port, started_server
from store_helpers import answers, unavailable

from opero import opero
from opero.core.backends.redis_limiter import RedisLimiter
from opero.testing import FakeClock

HOST, PORT, DB = "127.0.0.1", 6379, 9
PREFIX = "opero:ratelimit:"
#: The server's microsecond rounding, and a loaded machine's round trips.
TOLERANCE = 0.05


def sync_client(port: int = PORT) -> redis.Redis:
    return redis.Redis(
        host=HOST, port=port, db=DB, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )


def async_client(port: int = PORT) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=HOST, port=port, db=DB, socket_connect_timeout=0.2, retry=AsyncRetry(NoBackoff(), 0)
    )


@pytest.fixture(scope="module")
def shared_server() -> None:
    if not answers(PORT):
        unavailable(f"no redis-server answers on {HOST}:{PORT}")


@pytest.fixture
def scope(shared_server: None) -> Iterator[str]:
    """A scope name no other test uses; its key is deleted afterwards."""
    name = f"pause-{uuid.uuid4().hex}"
    yield name
    admin = sync_client()
    admin.delete(PREFIX + name)
    admin.close()


@pytest.fixture
def limiters() -> Iterator[Callable[..., RedisLimiter]]:
    made: list[RedisLimiter] = []

    def make(scope: str, rate: float = 10, burst: int = 1, **options: Any) -> RedisLimiter:
        options.setdefault("client_factory", sync_client)
        made.append(RedisLimiter(rate, burst, scope, **options))
        return made[-1]

    yield make
    for limiter in made:
        limiter.close()


def within(delay: float, expected: float, since: float) -> bool:
    """``delay`` is what the server gave ``expected`` seconds after a moment ``since`` ago."""
    elapsed = time.monotonic() - since
    return expected - elapsed - TOLERANCE <= delay <= expected + TOLERANCE


def test_a_pause_by_one_process_holds_the_others_sharing_the_scope(
    scope: str, limiters: Callable[..., RedisLimiter]
) -> None:
    here, there, elsewhere = limiters(scope), limiters(scope), limiters(scope + "-other")
    since = time.monotonic()
    here.pause_for(7, now=0.0)
    first, second = (there.reserve_for((), {}, 0.0) for _ in range(2))
    assert within(first, 7.0, since), first
    assert within(second, 7.1, since), second  # then one start per interval
    assert elsewhere.reserve_for((), {}, 0.0) == 0.0


def test_a_pause_lasts_as_long_as_the_key_and_never_shortens(
    scope: str, limiters: Callable[..., RedisLimiter]
) -> None:
    limiter, admin = limiters(scope, burst=3), sync_client()
    try:
        limiter.pause_for(0, now=0.0)
        assert not admin.exists(PREFIX + scope)  # an empty pause writes nothing
        since = time.monotonic()
        limiter.pause_for(7, now=0.0)
        limiter.pause_for(2, now=0.0)
        # The key outlives the pause (a burst of 3 at 10/s adds its 0.2 s of tolerance).
        assert 7000 <= admin.pttl(PREFIX + scope) <= 7300
        assert within(limiters(scope, burst=3).reserve_for((), {}, 0.0), 7.0, since)
    finally:
        admin.close()


@pytest.mark.asyncio
async def test_the_async_pause_is_shared_too(
    scope: str, limiters: Callable[..., RedisLimiter]
) -> None:
    pausing = limiters(scope, async_client_factory=async_client)
    reserving = limiters(scope, async_client_factory=async_client)
    thread_only = limiters(scope)  # no async client: the sync one, off the loop
    since = time.monotonic()
    await pausing.apause_for(7, now=0.0)
    assert within(await reserving.areserve_for((), {}, 0.0), 7.0, since)
    await thread_only.apause_for(9, now=0.0)
    assert within(await reserving.areserve_for((), {}, 0.0), 9.0, since)
    await pausing.aclose()
    await reserving.aclose()


def test_while_redis_is_unreachable_the_pause_holds_in_process(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens here
    limiter = RedisLimiter(10, 1, "paused-down", client_factory=lambda: sync_client(port))
    try:
        with caplog.at_level(logging.WARNING, logger="opero"):
            limiter.pause_for(7, clock.now())
            waits = [limiter.reserve_for((), {}, clock.now()) for _ in range(2)]
    finally:
        limiter.close()
    assert waits == pytest.approx([7.0, 7.1])
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


@pytest.fixture
def private_server() -> Iterator[OwnServer]:
    with started_server() as server:
        yield server


def test_a_pause_made_during_an_outage_still_holds_when_redis_comes_back_empty(
    private_server: OwnServer, clock: FakeClock
) -> None:
    limiter = RedisLimiter(
        10, 1, "comeback", client_factory=lambda: sync_client(private_server.port)
    )
    try:
        assert limiter.reserve_for((), {}, clock.now()) == 0.0  # shared
        private_server.stop()
        limiter.pause_for(7, clock.now())  # redis cannot hear it: this process keeps it
        private_server.start()  # empty
        clock.advance(1.0)  # past the cool-down: redis is asked again, and answers
        # redis would start it at once; the pause it never heard of still holds here.
        assert limiter.reserve_for((), {}, clock.now()) == pytest.approx(6.0, abs=TOLERANCE)
    finally:
        limiter.close()


def pause_in_another_process(scope: str, seconds: float, paused: Queue[float]) -> None:
    limiter = RedisLimiter(10, 1, scope, client_factory=sync_client)
    limiter.pause_for(seconds, now=0.0)
    paused.put(time.time())
    limiter.close()


def test_a_pause_in_another_process_holds_this_one(
    scope: str, limiters: Callable[..., RedisLimiter]
) -> None:
    context = multiprocessing.get_context("spawn")
    paused: Queue[float] = context.Queue()
    child = context.Process(target=pause_in_another_process, args=(scope, 20.0, paused))
    child.start()
    try:
        at = paused.get(timeout=45)
        child.join(timeout=30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        paused.close()
        paused.join_thread()
    delay = limiters(scope).reserve_for((), {}, 0.0)
    assert 20.0 - (time.time() - at) - TOLERANCE <= delay <= 20.0 + TOLERANCE


class RateLimited(Exception):
    retry_after = 7


def test_a_429_met_by_one_function_holds_another_sharing_the_redis_scope(
    scope: str, clock: FakeClock
) -> None:
    # Two functions, two limiters (the second has a client of its own, as another
    # process would): a 429 with Retry-After seen by the first pauses the second.
    failures = []

    @opero(
        retries=1,
        rate_limit=100,
        rate_limit_scope=scope,
        rate_limit_backend="redis",
        rate_limit_backend_config={"host": HOST, "port": PORT, "db": DB},
    )
    def refused() -> str:
        if not failures:
            failures.append(clock.now())
            raise RateLimited
        return "ok"

    own_client = sync_client()

    @opero(
        rate_limit=100,
        rate_limit_scope=scope,
        rate_limit_backend="redis",
        rate_limit_backend_config={"client": own_client},
    )
    def elsewhere() -> str:
        return "ok"

    try:
        since = time.monotonic()
        assert refused() == "ok"
        before = len(clock.sleeps)
        assert elsewhere() == "ok"
        # The redis schedule runs on real time, which has hardly moved: the whole pause.
        waited = sum(clock.sleeps[before:])
        assert within(waited, 7.0, since), clock.sleeps
    finally:
        own_client.close()
