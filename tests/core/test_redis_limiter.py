"""The shared rate limit in redis: one schedule for every process, and a fallback when down.

These tests talk to a real redis-server on 127.0.0.1:6379, database 9 (the
recovery test starts its own).  Without one they are skipped, except under
``CI=true``, where a missing server is a failure: CI must not pass by skipping.

Timing checks never assume how long a round trip takes.  The server reads its
clock somewhere between the moment a call is sent and the moment its answer
arrives, and GCRA's start times only grow when those readings grow, so running
the in-process ``Limiter`` on the "sent" times and on the "answered" times
brackets every delay the server may correctly return, however slow the machine.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import logging
import multiprocessing
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_servers import OwnServer, free_port, started_server

from opero import ConfigurationError, opero
from opero.core.backends.redis_limiter import RedisLimiter
from opero.core.rate_limit import Limiter
from opero.testing import FakeClock

HOST = "127.0.0.1"
PORT = 6379
#: The database tests may write to (as in tests/core/conftest.py); nothing else uses it.
DB = 9
PREFIX = "opero:ratelimit:"
#: Slack for the server's microsecond rounding and for clocks ticking at slightly different rates.
TOLERANCE = 0.003
IN_CI = os.environ.get("CI") == "true"


def sync_client(port: int = PORT, **options: Any) -> redis.Redis:
    """A client that gives up at once: the limiter, not redis-py, decides when to retry."""
    return redis.Redis(
        host=HOST,
        port=port,
        db=DB,
        socket_connect_timeout=0.2,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        **options,
    )


def async_client(port: int = PORT, **options: Any) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=HOST,
        port=port,
        db=DB,
        socket_connect_timeout=0.2,
        socket_timeout=2.0,
        retry=AsyncRetry(NoBackoff(), 0),
        **options,
    )


def answers(port: int) -> bool:
    client = sync_client(port)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def unavailable(reason: str) -> None:
    """Skip for a developer without redis; fail under CI=true, where redis must be there."""
    if IN_CI:
        pytest.fail(f"{reason}, and CI=true: the shared rate limit must be tested in CI")
    pytest.skip(f"{reason} (start one, or set CI=true to turn this skip into a failure)")


@pytest.fixture(scope="module")
def redis_server() -> None:
    if not answers(PORT):
        unavailable(f"no redis-server answers on {HOST}:{PORT}")


@pytest.fixture
def admin(redis_server: None) -> Iterator[redis.Redis]:
    client = sync_client()
    yield client
    client.close()


@pytest.fixture
def scope(admin: redis.Redis) -> Iterator[str]:
    """A scope name no other test (or earlier run) uses; its key is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    admin.delete(PREFIX + name)


@pytest.fixture
def limiters() -> Iterator[Callable[..., RedisLimiter]]:
    """Build limiters on the local server; their clients are closed after the test."""
    made: list[RedisLimiter] = []

    def make(rate: float, burst: int, scope: str, **options: Any) -> RedisLimiter:
        options.setdefault("client_factory", sync_client)
        limiter = RedisLimiter(rate, burst, scope, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()


def timed(reserve: Callable[[], float]) -> tuple[float, float, float]:
    """(time sent, delay, time answered) of one reservation."""
    sent = time.time()
    delay = reserve()
    return sent, delay, time.time()


def assert_gcra(calls: list[tuple[float, float, float]], rate: float, burst: int) -> None:
    """Each delay is one the server's GCRA could return for calls sent and answered then."""
    early, late = Limiter(rate, burst), Limiter(rate, burst)
    for k, (sent, delay, answered) in enumerate(calls):
        earliest_start = sent + early.reserve(sent)
        latest_start = answered + late.reserve(answered)
        low, high = earliest_start - answered, latest_start - sent
        assert low - TOLERANCE <= delay <= high + TOLERANCE, (k, low, delay, high)


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "opero" and r.levelno == logging.WARNING and "unavailable" in r.getMessage()
    ]


# --- the shared schedule ------------------------------------------------------------------


def test_burst_one_spaces_reservations_one_interval_apart(
    scope: str, limiters: Callable[..., RedisLimiter], caplog: pytest.LogCaptureFixture
) -> None:
    limiter = limiters(100, 1, scope)
    calls = [timed(lambda: limiter.reserve_for((), {}, 0.0)) for _ in range(10)]
    assert calls[0][1] == 0.0
    # On a quiet machine these are 0, 0.01, ..., 0.09 less the time spent so far.
    assert_gcra(calls, rate=100, burst=1)
    assert fallback_warnings(caplog) == []


def test_idle_time_does_not_save_up_extra_starts(
    scope: str, limiters: Callable[..., RedisLimiter], caplog: pytest.LogCaptureFixture
) -> None:
    limiter = limiters(100, 1, scope)
    calls = [timed(lambda: limiter.reserve_for((), {}, 0.0))]
    time.sleep(0.05)  # five intervals go unused; they must not be handed out later
    calls += [timed(lambda: limiter.reserve_for((), {}, 0.0)) for _ in range(3)]
    assert_gcra(calls, rate=100, burst=1)  # about 0, then 0, 0.01, 0.02 again
    assert fallback_warnings(caplog) == []


def test_burst_lets_that_many_start_at_once(
    scope: str, limiters: Callable[..., RedisLimiter], caplog: pytest.LogCaptureFixture
) -> None:
    limiter = limiters(1, 3, scope)
    calls = [timed(lambda: limiter.reserve_for((), {}, 0.0)) for _ in range(5)]
    assert [delay for _, delay, _ in calls[:3]] == [0.0, 0.0, 0.0]
    assert_gcra(calls, rate=1, burst=3)  # the 4th waits about 1 s, the 5th about 2 s
    assert fallback_warnings(caplog) == []


def test_key_expires_soon_after_the_schedule_stops_mattering(
    scope: str, limiters: Callable[..., RedisLimiter], admin: redis.Redis
) -> None:
    limiter = limiters(0.1, 1, scope)
    limiter.reserve_for((), {}, 0.0)
    # The next slot is 10 s away at most; the key outlives it by a millisecond.
    assert 0 < admin.pttl(PREFIX + scope) <= 10_001


@pytest.mark.parametrize("stored", ["1", "not a time"], ids=["long-past", "garbage"])
def test_a_stale_or_garbage_key_counts_as_a_fresh_schedule(
    stored: str,
    scope: str,
    admin: redis.Redis,
    limiters: Callable[..., RedisLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin.set(PREFIX + scope, stored)  # no expiry, unlike the keys the limiter writes
    limiter = limiters(10, 1, scope)
    calls = [timed(lambda: limiter.reserve_for((), {}, 0.0)) for _ in range(2)]
    assert calls[0][1] == 0.0
    assert_gcra(calls, rate=10, burst=1)  # the second about 0.1 s later
    assert fallback_warnings(caplog) == []


def test_limiters_with_one_scope_share_a_schedule_and_other_scopes_do_not(
    scope: str,
    admin: redis.Redis,
    limiters: Callable[..., RedisLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two objects with separate clients, as two processes would have.
    first, second = limiters(10, 1, scope), limiters(10, 1, scope)
    other_scope = f"test-{uuid.uuid4().hex}"
    other = limiters(10, 1, other_scope)
    try:
        calls = [
            timed(functools.partial(limiter.reserve_for, (), {}, 0.0))
            for limiter in (first, second, first, second)
        ]
        assert other.reserve_for((), {}, 0.0) == 0.0  # untouched by the busy scope
        calls.append(timed(lambda: second.reserve_for((), {}, 0.0)))
        assert_gcra(calls, rate=10, burst=1)  # one schedule: about 0, 0.1, ..., 0.4
    finally:
        admin.delete(PREFIX + other_scope)
    assert fallback_warnings(caplog) == []


@pytest.mark.asyncio
async def test_async_gather_gets_distinct_slots(
    scope: str, limiters: Callable[..., RedisLimiter], caplog: pytest.LogCaptureFixture
) -> None:
    limiter = limiters(10, 1, scope, async_client_factory=async_client)
    started = time.time()
    delays = await asyncio.gather(*(limiter.areserve_for((), {}, 0.0) for _ in range(10)))
    spent = time.time() - started
    await limiter.aclose()
    # Every server reading fell within `spent`, so slots 0.1 s apart show as delays
    # 0.1 s apart give or take `spent`; two tasks given one slot would differ by ~0.
    delays.sort()
    assert delays[0] == 0.0
    assert delays[-1] <= 0.9 + spent + TOLERANCE
    gaps = [later - earlier for earlier, later in itertools.pairwise(delays)]
    assert min(gaps) >= 0.1 - spent - TOLERANCE, gaps
    assert fallback_warnings(caplog) == []


def test_async_schedule_continues_across_event_loops_and_closes_their_clients(
    scope: str,
    admin: redis.Redis,
    limiters: Callable[..., RedisLimiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"opero-test-{uuid.uuid4().hex[:12]}"
    limiter = limiters(10, 1, scope, async_client_factory=lambda: async_client(client_name=name))

    async def three() -> list[float]:
        return await asyncio.gather(*(limiter.areserve_for((), {}, 0.0) for _ in range(3)))

    started = time.time()
    first = asyncio.run(three())
    second = asyncio.run(three())  # a client bound to the first, closed loop would fail here
    spent = time.time() - started
    assert sorted(first)[0] == 0.0
    # The second loop's slots come after the first loop's three (0, 0.1, 0.2).
    assert min(second) >= 0.3 - spent - TOLERANCE
    assert fallback_warnings(caplog) == []
    # Each loop's connections were closed when asyncio.run shut it down.
    gc.collect()
    deadline = time.monotonic() + 1.0
    while any(c["name"] == name for c in admin.client_list()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [c for c in admin.client_list() if c["name"] == name] == []


@pytest.mark.asyncio
async def test_async_without_async_client_uses_the_sync_client_off_the_loop(
    scope: str, limiters: Callable[..., RedisLimiter]
) -> None:
    limiter = limiters(10, 1, scope)
    started = time.time()
    delays = sorted(await asyncio.gather(*(limiter.areserve_for((), {}, 0.0) for _ in range(3))))
    spent = time.time() - started
    assert delays[0] == 0.0
    assert min(b - a for a, b in itertools.pairwise(delays)) >= 0.1 - spent - TOLERANCE


def test_invalid_settings_are_configuration_errors() -> None:
    for rate, burst, scope, retry_after in [
        (0, 1, "s", 1.0),
        (10, 0, "s", 1.0),
        (10, 1, "", 1.0),
        (10, 1, "s", -1.0),
        (10, 1, "s", float("nan")),
    ]:
        with pytest.raises(ConfigurationError):
            RedisLimiter(rate, burst, scope, client_factory=sync_client, retry_after=retry_after)


# --- three processes, one limit (the acceptance test) --------------------------------------


def paced_worker(scope: str, barrier: Barrier, results: Queue[list[float]]) -> None:
    """One process: 20 calls of a function decorated with a shared 20/s limit."""

    @opero(
        rate_limit=20,
        rate_limit_scope=scope,
        rate_limit_backend="redis",
        rate_limit_backend_config={"host": HOST, "port": PORT, "db": DB},
    )
    def call() -> float:
        return time.time()

    barrier.wait(timeout=30)
    results.put([call() for _ in range(20)])


def test_three_processes_share_one_rate(scope: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    results: Queue[list[float]] = context.Queue()
    workers = [
        context.Process(target=paced_worker, args=(scope, barrier, results)) for _ in range(3)
    ]
    try:
        for worker in workers:
            worker.start()
        starts = sorted(t for _ in workers for t in results.get(timeout=45))
        for worker in workers:
            worker.join(timeout=10)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
        results.close()
        results.join_thread()
    assert len(starts) == 60
    assert starts[-1] - starts[0] >= 2.9  # 60 starts at 20 per second
    busiest = max(sum(1 for s in starts if t <= s < t + 1) for t in starts)
    assert busiest <= 21, busiest


# --- redis unreachable ---------------------------------------------------------------------


WARNING_TEXT = (
    r"opero: shared rate limit '{scope}' unavailable \((ConnectionError|TimeoutError)\); "
    r"limiting within this process until redis answers again"
)


def test_unreachable_redis_limits_in_process_and_warns_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # No redis-server needed: nothing listens on this port.
    url = f"redis://opero:s3cret-pw@{HOST}:{free_port()}/0"
    limiter = RedisLimiter(
        10,
        1,
        "down",
        client_factory=lambda: redis.Redis.from_url(
            url, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        ),
    )
    with caplog.at_level(logging.INFO, logger="opero"):
        delays = [limiter.reserve_for((), {}, clock.now()) for _ in range(3)]
        clock.advance(limiter.retry_after)  # redis is asked again, and is still down
        delays += [limiter.reserve_for((), {}, clock.now()) for _ in range(2)]
    limiter.close()
    # Even spacing in this process; after the pause the schedule has caught up.
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.0, 0.1])
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1
    assert re.fullmatch(WARNING_TEXT.format(scope="down"), warnings[0])
    assert "s3cret" not in caplog.text
    assert f"{HOST}:" not in caplog.text


@pytest.mark.asyncio
async def test_unreachable_redis_async_limits_in_process_and_warns_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    limiter = RedisLimiter(
        10,
        1,
        "down-async",
        client_factory=lambda: sync_client(port),
        async_client_factory=lambda: async_client(port),
    )
    delays = [await limiter.areserve_for((), {}, clock.now()) for _ in range(3)]
    await limiter.aclose()
    limiter.close()
    assert delays == pytest.approx([0.0, 0.1, 0.2])
    assert len(fallback_warnings(caplog)) == 1


# --- redis goes away and comes back -------------------------------------------------------


@pytest.fixture
def private_server() -> Iterator[OwnServer]:
    with started_server() as server:
        yield server


def test_recovers_the_shared_schedule_when_redis_comes_back(
    private_server: OwnServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opero")
    key = PREFIX + "comeback"
    limiter = RedisLimiter(
        0.25, 1, "comeback", client_factory=lambda: sync_client(private_server.port)
    )
    check = sync_client(private_server.port)

    def reserve() -> float:
        return limiter.reserve_for((), {}, clock.now())

    try:
        assert reserve() == 0.0
        assert check.exists(key)  # shared, for the next 4 s

        private_server.stop()
        # In-process from here, after the start the server gave: 4 s later, then 8 s.
        assert [reserve(), reserve()] == [4.0, 8.0]
        clock.advance(1.0)  # past the first cool-down (0.5 s)
        assert reserve() == pytest.approx(11.0)  # asked redis again, still down
        assert len(fallback_warnings(caplog)) == 1

        private_server.start()  # empty: nothing saved
        assert reserve() == pytest.approx(15.0)  # the cool-down is 1 s now: too soon to ask
        assert not check.exists(key)
        clock.advance(1.0)
        # A fresh shared schedule, but its starts keep clear of the in-process ones
        # still ahead (the last at +15 s): 19 s from the first advance, then 4 s more.
        shared = [reserve(), reserve()]
        assert check.exists(key)
        assert shared == pytest.approx([18.0, 22.0], abs=TOLERANCE)
    finally:
        limiter.close()
        check.close()
    assert len(fallback_warnings(caplog)) == 1
    restored = [r.getMessage() for r in caplog.records if "restored" in r.getMessage()]
    assert restored == ["opero: shared rate limit 'comeback' restored"]
    assert [r.levelno for r in caplog.records if "restored" in r.getMessage()] == [logging.INFO]
