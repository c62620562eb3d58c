"""A key pool's order for one attempt, its rests and budgets, and its settings; times passed in."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from typing import Any

import pytest

from opero import Breaker, ConfigurationError
from opero.core.candidates import Candidate, Cursor, Pool, check_settings, order

TRIP = Breaker(failure_threshold=1, cooldown=10)


def pool(size: int, **settings: Any) -> list[Candidate]:
    return [Candidate(**settings) for _ in range(size)]


def trip(candidate: Candidate, now: float) -> None:
    assert candidate.breaker is not None
    assert candidate.breaker.record(now, failed=True) == "open"


def test_ordered_is_by_index() -> None:
    assert order("ordered", 3, pool(3), now=0.0) == [0, 1, 2]
    assert order("ordered", 3, pool(3), now=0.0, cursor=7) == [0, 1, 2]


def test_only_the_first_n_are_ordered() -> None:
    assert order("round_robin", 2, pool(5), now=0.0, cursor=3) == [1, 0]


def test_open_candidates_are_left_out_until_the_cooldown_passes() -> None:
    keys = pool(3, breaker=TRIP)
    trip(keys[0], now=0.0)
    assert order("ordered", 3, keys, now=5.0) == [1, 2]
    # Half-open after the cooldown: back in the list, after the healthy ones.
    assert order("ordered", 3, keys, now=10.0) == [1, 2, 0]


def test_healthy_come_before_resting_and_half_open_whatever_the_strategy() -> None:
    keys = pool(4, breaker=TRIP, rate=10.0)
    keys[0].rest(now=0.0, seconds=30)  # a 429 with Retry-After: 30
    trip(keys[1], now=0.0)  # half-open at 10
    for strategy in ("ordered", "round_robin", "least_loaded"):
        listed = order(strategy, 4, keys, now=10.0, cursor=0)  # type: ignore[arg-type]
        assert sorted(listed[:2]) == [2, 3], strategy
        assert sorted(listed[2:]) == [0, 1], strategy
    assert order("ordered", 4, keys, now=30.0) == [0, 2, 3, 1]  # the rest is over


def test_a_rest_keeps_the_longer_one_and_ignores_nonsense() -> None:
    key = Candidate()
    key.rest(now=0.0, seconds=20)
    key.rest(now=1.0, seconds=5)
    assert key.resting(19.9)
    assert not key.resting(20.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        fresh = Candidate()
        fresh.rest(now=0.0, seconds=bad)
        assert not fresh.resting(0.0)


def test_round_robin_starts_one_further_on_each_call() -> None:
    keys, cursor = pool(3), Cursor()
    firsts = [order("round_robin", 3, keys, now=0.0, cursor=cursor.next())[0] for _ in range(9)]
    assert firsts == [0, 1, 2] * 3
    assert order("round_robin", 3, keys, now=0.0, cursor=4) == [1, 2, 0]


def test_round_robin_is_fair_across_threads() -> None:
    keys, cursor = pool(3), Cursor()
    firsts: list[int] = []
    barrier = threading.Barrier(6)

    def calls() -> None:
        barrier.wait()
        mine = [order("round_robin", 3, keys, now=0.0, cursor=cursor.next())[0] for _ in range(300)]
        firsts.extend(mine)

    workers = [threading.Thread(target=calls) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert Counter(firsts) == {0: 600, 1: 600, 2: 600}


def test_round_robin_skips_an_open_candidate_and_keeps_the_rotation() -> None:
    keys = pool(3, breaker=TRIP)
    trip(keys[1], now=0.0)
    assert [order("round_robin", 3, keys, now=1.0, cursor=c) for c in range(3)] == [
        [0, 2],
        [2, 0],
        [0, 2],  # the open one's turn is shared, not handed to its neighbour
    ]


def test_least_loaded_takes_the_earliest_slot_then_the_fewest_in_flight() -> None:
    keys = pool(3, rate=1.0)
    assert keys[0].budget is not None
    assert keys[0].budget.reserve(now=0.0) == 0.0  # its next slot is at 1.0
    keys[1].started()
    keys[1].started()
    keys[2].started()
    assert order("least_loaded", 3, keys, now=0.0) == [2, 1, 0]
    keys[2].ended()
    keys[2].ended()  # never below zero
    assert keys[2].in_flight == 0
    assert order("least_loaded", 3, keys, now=0.0) == [2, 1, 0]
    # At 1.0 every slot is free: the fewest in flight first, ties in rotation order.
    assert order("least_loaded", 3, keys, now=1.0, cursor=1) == [2, 0, 1]


def test_least_loaded_ties_rotate_so_idle_candidates_share_the_calls() -> None:
    keys = pool(3)
    firsts = [order("least_loaded", 3, keys, now=0.0, cursor=c)[0] for c in range(6)]
    assert firsts == [0, 1, 2, 0, 1, 2]


def test_next_slot_is_now_without_a_budget_and_never_reserves() -> None:
    key = Candidate(rate=2.0, burst=2)
    assert Candidate().next_slot(5.0) == 5.0
    assert key.budget is not None
    assert key.next_slot(0.0) == 0.0
    assert key.next_slot(0.0) == 0.0  # peeking takes no slot
    key.budget.reserve(0.0)
    key.budget.reserve(0.0)
    assert key.next_slot(0.0) == pytest.approx(0.5)


def test_no_candidates() -> None:
    assert order("round_robin", 0, [], now=0.0, cursor=3) == []


def test_a_pool_grows_to_the_longest_list_and_keeps_each_candidates_health() -> None:
    keys = Pool("ordered", TRIP, rate=None, burst=1)
    assert keys.order(2, now=0.0) == [0, 1]
    trip(keys.candidates[0], now=0.0)
    # A later call with three candidates: the same candidate 0, still open; a new, healthy 2.
    assert keys.order(3, now=1.0) == [1, 2]
    assert len(keys.health(1)) == 3
    assert all(candidate.breaker is not None for candidate in keys.candidates)


def test_a_pool_grows_once_under_threads() -> None:
    keys = Pool("round_robin", None, rate=5.0, burst=2)
    barrier = threading.Barrier(8)

    def grow() -> None:
        barrier.wait()
        keys.health(500)

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: a missing lock shows at once
    try:
        workers = [threading.Thread(target=grow) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(before)
    assert len(keys.candidates) == 500
    assert keys.candidates[0].budget is not None
    assert keys.candidates[0].budget.burst == 2


# --- settings -------------------------------------------------------------------------------


def settings(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "candidate_breaker": None,
        "circuit_breaker": None,
        "fallback_strategy": "ordered",
        "candidate_rate_limit": None,
        "candidate_rate_limit_burst": 1,
        "arg_fallback": "key",
    }
    return base | changes


def test_check_settings_returns_the_breakers() -> None:
    config = Breaker(cooldown=3)
    assert check_settings(**settings()) == (None, None)
    assert check_settings(**settings(candidate_breaker=True, circuit_breaker=config)) == (
        Breaker(),
        config,
    )
    assert check_settings(**settings(arg_fallback=None, circuit_breaker=True)) == (None, Breaker())


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"candidate_breaker": "yes"}, "candidate_breaker must be True, False, None or a Breaker"),
        ({"circuit_breaker": 1}, "circuit_breaker must be True, False, None or a Breaker"),
        ({"fallback_strategy": "random"}, "fallback_strategy must be one of 'ordered'"),
        ({"fallback_strategy": ["ordered"]}, "fallback_strategy must be one of"),
        ({"candidate_rate_limit": 0}, "candidate_rate_limit must be"),
        ({"candidate_rate_limit": True}, "candidate_rate_limit must be"),
        ({"candidate_rate_limit_burst": 0}, "candidate_rate_limit_burst must be"),
        ({"arg_fallback": None, "candidate_breaker": True}, "candidate_breaker needs arg_fallback"),
        (
            {"arg_fallback": None, "candidate_rate_limit": 5},
            "candidate_rate_limit needs arg_fallback",
        ),
        (
            {"arg_fallback": None, "fallback_strategy": "round_robin"},
            "fallback_strategy needs arg_fallback",
        ),
    ],
)
def test_bad_settings_name_the_parameter(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        check_settings(**settings(**changes))
