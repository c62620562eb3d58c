"""Breakers, rests and budgets in redis (``breaker_backend="redis"``), against a real server.

The state rules run through the redis script on explicit times (the script's test-only
time argument), beside the in-process ``BreakerState`` as the reference: the same cases as
``test_breaker.py``, the same expected answers, and the same reference model.  Then the
server's own clock (short real cooldowns, generous checks), two holders of one key (two
processes' view), and outages on a redis-server of the test's own.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_servers import OwnServer, started_server
from store_helpers import REDIS_DB, REDIS_HOST, REDIS_PORT, answers, unavailable
from test_breaker import SLICES, Model, configs, steps

from opero import Breaker
from opero.core.backends.redis_breaker import Link, RedisCandidate
from opero.core.breaker import State
from opero.core.breaker_state import BreakerState

Machine = Callable[..., Any]


def client(port: int = REDIS_PORT) -> redis.Redis:
    return redis.Redis(
        host=REDIS_HOST,
        port=port,
        db=REDIS_DB if port == REDIS_PORT else 0,
        socket_connect_timeout=0.5,
        socket_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.fixture(scope="module")
def shared() -> Iterator[redis.Redis]:
    """The shared server (never stopped); every key a test made is deleted afterwards."""
    if not answers(REDIS_PORT):
        unavailable(f"no redis-server answers on {REDIS_HOST}:{REDIS_PORT}")
    admin = client()
    yield admin
    admin.close()


@pytest.fixture
def names(shared: redis.Redis) -> Iterator[Callable[[], str]]:
    """Fresh key names under ``opero:breaker:test-...``, deleted after the test."""
    made: list[str] = []

    def fresh() -> str:
        made.append(f"opero:breaker:test-{uuid.uuid4().hex}:0")
        return made[-1]

    yield fresh
    for key in made:
        shared.delete(key, key + ":budget")


@pytest.fixture
def explicit_link(shared: redis.Redis) -> Iterator[Link]:
    link = Link("test", client, explicit_time=True)
    yield link
    link.close()


@pytest.fixture(params=["memory", "redis"])
def machine(request: pytest.FixtureRequest, explicit_link: Link, names: Any) -> Machine:
    """``machine(**Breaker settings)``: a local BreakerState, or one kept in redis."""
    if request.param == "memory":
        return lambda **s: BreakerState(Breaker(**s))
    return lambda **s: RedisCandidate(explicit_link, names(), Breaker(**s))


def feed(state: Any, outcomes: str, start: float = 0.0) -> list[State | None]:
    """Record one outcome a second: ``F`` a failure, ``S`` a success."""
    return [state.record(start + k, failed=c == "F") for k, c in enumerate(outcomes)]


# --- the rules, on explicit times, in redis and in memory alike ----------------------------


def test_consecutive_failures_open(machine: Machine) -> None:
    state = machine(failure_threshold=3, failure_ratio=None)
    assert feed(state, "FFSFF") == [None] * 5
    assert state.state(5.0) == "closed"
    assert state.record(5.0, failed=True) == "open"
    assert state.acquire(6.0) is False


def test_ratio_opens_only_with_minimum_calls(machine: Machine) -> None:
    state = machine(failure_threshold=None, window_calls=10, minimum_calls=4)
    assert feed(state, "FSF") == [None] * 3
    assert state.record(3.0, failed=False) == "open"


def test_below_the_minimum_never_opens(machine: Machine) -> None:
    state = machine(failure_threshold=None, failure_ratio=0.1, window_calls=50, minimum_calls=5)
    assert feed(state, "FFFF") == [None] * 4
    assert state.state(4.0) == "closed"


def test_the_minimum_is_capped_at_the_window(machine: Machine) -> None:
    state = machine(failure_threshold=None, window_calls=2, minimum_calls=10)
    assert feed(state, "SF") == [None, "open"]


def test_the_count_window_slides(machine: Machine) -> None:
    state = machine(failure_threshold=None, failure_ratio=0.75, window_calls=4, minimum_calls=4)
    assert feed(state, "SSSSFFF") == [None] * 6 + ["open"]


def test_the_time_window_forgets_old_outcomes(machine: Machine) -> None:
    fresh = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    assert fresh.record(0.0, failed=True) is None
    assert fresh.record(9.0, failed=False) == "open"
    state = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    assert state.record(0.0, failed=True) is None
    assert state.record(20.0, failed=False) is None
    assert state.record(21.0, failed=True) == "open"


def test_an_outcome_leaves_the_time_window_between_nine_and_ten_tenths(machine: Machine) -> None:
    assert SLICES == 10
    kept = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    kept.record(0.95, failed=True)
    assert kept.record(9.99, failed=False) == "open"
    gone = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    gone.record(0.95, failed=True)
    assert gone.record(10.0, failed=False) is None


def opened_at(state: Any, now: float) -> float:
    assert state.acquire(now)
    assert state.record(now, failed=True) == "open"
    reopens = state.reopens_at(now)
    assert reopens is not None
    return float(reopens)


def test_the_cooldown_doubles_to_the_maximum_and_resets_on_close(machine: Machine) -> None:
    state = machine(failure_threshold=1, cooldown=10, max_cooldown=35)
    assert state.record(0.0, failed=True) == "open"
    assert state.reopens_at(0.0) == 10.0
    assert state.state(9.99) == "open"
    assert state.state(10.0) == "half_open"
    assert opened_at(state, 10.0) == 30.0
    assert opened_at(state, 30.0) == 65.0
    assert opened_at(state, 65.0) == 100.0
    assert state.acquire(100.0)
    assert state.record(100.0, failed=False) == "closed"
    assert state.reopens_at(100.0) is None
    assert state.record(101.0, failed=True) == "open"
    assert state.reopens_at(101.0) == 111.0


def test_half_open_lets_through_half_open_calls_then_closes(machine: Machine) -> None:
    state = machine(failure_threshold=1, cooldown=1, half_open_calls=2)
    state.record(0.0, failed=True)
    assert [state.acquire(1.0) for _ in range(3)] == [True, True, False]
    assert state.record(1.5, failed=False) is None
    assert state.state(1.5) == "half_open"
    assert state.acquire(1.5) is False
    assert state.record(1.6, failed=False) == "closed"
    assert state.acquire(1.6) is True


def test_a_probe_failure_reopens_even_after_a_success(machine: Machine) -> None:
    state = machine(failure_threshold=1, cooldown=1, half_open_calls=2)
    state.record(0.0, failed=True)
    assert state.acquire(1.0)
    assert state.acquire(1.0)
    assert state.record(1.1, failed=False) is None
    assert state.record(1.2, failed=True) == "open"
    assert state.reopens_at(1.2) == pytest.approx(3.2)


def test_closing_starts_a_fresh_window(machine: Machine) -> None:
    state = machine(failure_threshold=None, window_calls=4, minimum_calls=4, cooldown=1)
    assert feed(state, "FFSS")[-1] == "open"
    assert state.acquire(5.0)
    assert state.record(5.0, failed=False) == "closed"
    assert feed(state, "FSS", start=6.0) == [None] * 3


def test_release_gives_back_a_probe_permit_and_never_goes_negative(machine: Machine) -> None:
    state = machine(failure_threshold=1, cooldown=1)
    state.release(0.0)
    state.record(0.0, failed=True)
    assert state.acquire(1.0) is True
    assert state.acquire(1.0) is False
    for _ in range(3):
        state.release(1.0)
    assert [state.acquire(1.0) for _ in range(2)] == [True, False]


def test_late_outcomes_while_open_change_nothing(machine: Machine) -> None:
    state = machine(failure_threshold=1, cooldown=10)
    state.record(0.0, failed=True)
    assert state.record(1.0, failed=True) is None
    assert state.record(2.0, failed=False) is None
    assert state.reopens_at(5.0) == 10.0


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(configs, steps)
def test_the_script_matches_the_model(
    explicit_link: Link, names: Any, config: Breaker, ops: list[tuple[str, float]]
) -> None:
    state, model = RedisCandidate(explicit_link, names(), config), Model(config)
    now = 0.0
    for op, gap in ops:
        # Gaps of eighths keep every time exact in binary, in seconds and in the script's
        # microseconds alike, so the two agree to the last bit (0.1 s steps would not).
        now += {0.1: 0.125, 0.7: 0.75}.get(gap, gap)
        if op == "acquire":
            assert state.acquire(now) == model.acquire(now)
        elif op == "release":
            state.release(now)
            model.release(now)
        else:
            assert state.record(now, op == "fail") == model.record(now, op == "fail")
        assert state.state(now) == (
            "half_open" if model.state == "open" and now >= model.until else model.state
        )
        expected = model.until if model.state == "open" and now < model.until else None
        assert state.reopens_at(now) == expected


# --- the server's clock, and two holders of one key (two processes' view) -----------------


@pytest.fixture
def server_link(shared: redis.Redis) -> Iterator[Link]:
    link = Link("test", client)
    yield link
    link.close()


def test_on_the_servers_clock_a_short_cooldown_reopens_for_one_probe(
    server_link: Link, names: Any
) -> None:
    key = names()
    config = Breaker(failure_threshold=1, cooldown=0.3, max_cooldown=0.3)
    here, there = RedisCandidate(server_link, key, config), RedisCandidate(server_link, key, config)
    assert here.acquire(time.monotonic())
    assert here.record(time.monotonic(), failed=True) == "open"
    opened = time.monotonic()
    reopens = here.reopens_at(opened)
    assert reopens is not None
    assert 0.0 < reopens - opened <= 0.3 + 0.05  # the server's cooldown, on this clock
    assert there.acquire(time.monotonic()) is False  # the other holder is refused at once
    assert there.state(time.monotonic()) == "open"  # and its mirror learnt it from the answer
    time.sleep(max(0.0, reopens - time.monotonic()) + 0.05)
    assert [there.acquire(time.monotonic()), here.acquire(time.monotonic())] == [True, False]
    assert there.record(time.monotonic(), failed=False) == "closed"
    assert here.acquire(time.monotonic()) is True


def test_the_budget_is_one_schedule_for_every_holder(server_link: Link, names: Any) -> None:
    key = names()
    holders = [RedisCandidate(server_link, key, Breaker(), rate=2, burst=2) for _ in range(2)]
    starts = []
    for k in range(6):
        holder = holders[k % 2]
        assert holder.acquire(time.monotonic())
        wait = holder.reserve(time.monotonic())
        starts.append(time.monotonic() + wait)  # nobody sleeps: the slot itself is compared
    # burst 2, then 0.5 s apart, whoever asks: 0, 0, 0.5, 1.0, 1.5, 2.0
    offsets = [at - starts[0] for at in starts]
    expected = [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert offsets == pytest.approx(expected, abs=0.05)
    assert holders[0].next_slot(time.monotonic()) > time.monotonic() + 1.0  # mirror, no trip
    assert holders[0].report(time.monotonic()).budget_used == 1.0


def test_a_rest_holds_every_holder(server_link: Link, names: Any) -> None:
    key = names()
    here, there = (RedisCandidate(server_link, key, Breaker()) for _ in range(2))
    here.rest(time.monotonic(), 0.2)
    assert here.resting(time.monotonic())
    assert here.rests == 1
    assert there.acquire(time.monotonic()) is False  # refused: it rests, in redis
    assert there.resting(time.monotonic())  # learnt from the answer
    time.sleep(0.25)
    assert there.acquire(time.monotonic()) is True
    assert there.state(time.monotonic()) == "closed"  # a rest is not a failure


def test_each_transition_is_reported_once_by_the_holder_that_made_it(
    explicit_link: Link, names: Any
) -> None:
    seen: list[tuple[str, str]] = []
    key = names()
    config = Breaker(failure_threshold=1, cooldown=1)
    here = RedisCandidate(explicit_link, key, config, on_change=lambda *c: seen.append(c))
    there = RedisCandidate(explicit_link, key, config, on_change=lambda *c: seen.append(("B", *c)))
    here.record(0.0, failed=True)
    assert there.acquire(0.5) is False  # no change
    assert there.acquire(1.0) is True
    there.record(1.0, failed=False)
    assert seen == [("closed", "open"), ("B", "open", "half_open"), ("B", "half_open", "closed")]
    assert here.state(1.0) == "half_open"  # stale mirror, never trusted to let a call through
    assert here.acquire(1.0) is True
    assert here.state(1.0) == "closed"


@pytest.mark.parametrize("half_open_calls", [1, 3])
def test_half_open_lets_exactly_its_probes_through_across_threads_and_holders(
    explicit_link: Link, names: Any, half_open_calls: int
) -> None:
    key = names()
    config = Breaker(failure_threshold=1, cooldown=1, half_open_calls=half_open_calls)
    holders = [RedisCandidate(explicit_link, key, config) for _ in range(4)]
    holders[0].record(0.0, failed=True)
    barrier = threading.Barrier(8)
    granted: list[bool] = []

    def probe(holder: RedisCandidate) -> None:
        barrier.wait()
        granted.append(holder.acquire(1.0))

    threads = [threading.Thread(target=probe, args=(holders[k % 4],)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == half_open_calls


# --- outages -------------------------------------------------------------------------------


@pytest.fixture
def own() -> Iterator[OwnServer]:
    with started_server() as server:
        yield server


def test_an_outage_uses_local_state_warns_once_and_opens_nothing(
    own: OwnServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opero")
    link = Link("outage-test", lambda: client(own.port))
    config = Breaker(failure_threshold=2, cooldown=30)
    key = "opero:breaker:outage:0"
    candidate = RedisCandidate(link, key, config, rate=50, burst=1)
    try:
        assert candidate.acquire(time.monotonic())
        assert candidate.reserve(time.monotonic()) <= 0.001
        assert candidate.record(time.monotonic(), failed=False) is None
        own.stop()
        starts = []  # (start, how long reserve took)
        for _ in range(6):  # every ask fails or is skipped: none of it is a failure
            now = time.monotonic()
            assert candidate.acquire(now) is True
            wait = candidate.reserve(now)  # counted from the moment it answers
            answered = time.monotonic()
            starts.append((answered + wait, answered - now))
            assert candidate.record(now, failed=False) is None
        assert candidate.state(time.monotonic()) == "closed"
        # never unlimited: the local budget spaces the starts 20 ms apart (each start
        # counted here is late by at most the time its reserve took)
        gaps = [(b - a, max(ta, tb)) for (a, ta), (b, tb) in itertools.pairwise(starts)]
        assert [gap for gap, took in gaps if gap < 0.02 - took - 1e-9] == [], gaps
        # real failures during the outage still count, locally
        assert candidate.record(time.monotonic(), failed=True) is None
        assert candidate.record(time.monotonic(), failed=True) == "open"
        assert candidate.acquire(time.monotonic()) is False
        own.start()  # empty: it forgot everything
        time.sleep(0.55)  # the first cool-down
        assert candidate.acquire(time.monotonic()) is True  # redis again: closed, fresh
        admin = client(own.port)
        assert admin.exists(key + ":budget")  # the slot was booked in redis again
        admin.close()
    finally:
        link.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "shared breakers of outage-test unavailable" in warnings[0]
    assert [r.getMessage() for r in caplog.records if "restored" in r.getMessage()] == [
        "opero: shared breakers of outage-test restored"
    ]


def test_an_outage_keeps_an_open_state_it_last_saw(own: OwnServer) -> None:
    link = Link("kept", lambda: client(own.port))
    candidate = RedisCandidate(link, "opero:breaker:kept:0", Breaker(failure_threshold=1))
    try:
        assert candidate.record(time.monotonic(), failed=True) == "open"
        own.stop()
        assert candidate.acquire(time.monotonic()) is False  # no round trip answers
        assert candidate.state(time.monotonic()) == "open"
        assert candidate.reopens_at(time.monotonic()) is not None
    finally:
        link.close()


def test_after_an_outage_a_fresh_server_never_doubles_the_rate(own: OwnServer) -> None:
    """Redis comes back empty while starts handed out locally are still ahead: the first
    shared slot is placed after them, so this process never starts two at once."""
    link = Link("recovery", lambda: client(own.port), retry_after=0.05, max_retry_after=0.05)
    candidate = RedisCandidate(link, "opero:breaker:recovery:0", Breaker(), rate=5, burst=1)
    try:
        own.stop()
        local = []
        for _ in range(4):  # 0, 0.2, 0.4, 0.6 s ahead: booked in this process only
            assert candidate.acquire(time.monotonic())
            local.append(time.monotonic() + candidate.reserve(time.monotonic()))
        own.start()  # it knows none of them
        time.sleep(0.1)  # the cool-down passes
        assert candidate.acquire(time.monotonic())
        shared = time.monotonic() + candidate.reserve(time.monotonic())
        assert not link.down  # redis answered
        assert shared >= local[-1] + 0.2 - 0.01
    finally:
        link.close()
