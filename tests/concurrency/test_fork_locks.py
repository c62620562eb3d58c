"""A child forked while a parent thread holds one of opero's locks still works.

``os.fork()`` copies a held lock as held, without the thread that would
release it.  Every opero lock is re-made free in the child (opero.core.forksafe),
and single-flight computations of the parent are forgotten there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from test_fork_child import in_forked_child

from opero import opero, opmap
from opero.core import clock, limiters

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks"),
]


@contextmanager
def held_by_another_thread(lock: Any) -> Iterator[None]:
    """``lock`` held by a parent thread for the duration of the block."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(30)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        release.set()
        holder.join(5)


@opero(cache=True, rate_limit=10_000)
def cached(n: int) -> int:
    return n + 1


@opmap(mode="thread", workers=2, progress=False, rate_limit=10_000)
def mapped(n: int) -> int:
    return n * 3


def locks() -> dict[str, Callable[[], Any]]:
    pipeline = cached.__opero__
    return {
        "counters": lambda: pipeline.counters._lock,
        "limiter": lambda: pipeline.limiter._lock,
        "memory-cache": lambda: pipeline.cache.backend._lock,
        "single-flight": lambda: pipeline.flights.table._lock,
        "scope-registry": lambda: limiters._groups_lock,
        "clock": lambda: clock._lock,
        "map-counters": lambda: mapped.__opero__.counters._lock,
        "map-limiter": lambda: mapped.__opero__.limiter._lock,
    }


@pytest.mark.parametrize("name", sorted(locks()))
def test_child_forked_while_a_lock_is_held(name: str) -> None:
    assert cached(1) == 2
    assert mapped([1, 2]) == [3, 6]
    with held_by_another_thread(locks()[name]()):

        def work() -> bool:
            with clock.using(clock.SystemClock()):
                pass
            return cached(5) == 6 and cached(5) == 6 and mapped([1, 2, 3]) == [3, 6, 9]

        assert in_forked_child(work) == 0


def test_a_flight_in_progress_at_fork_is_not_waited_for_in_the_child() -> None:
    started, release = threading.Event(), threading.Event()

    @opero(cache=True)
    def slow(n: int) -> int:
        started.set()
        release.wait(30)
        return n

    leader = threading.Thread(target=slow, args=(4,), daemon=True)
    leader.start()
    assert started.wait(5)
    try:
        # The child's leader thread does not exist: waiting for it would hang.
        release_in_child = release.set  # the child's own copy of the event
        assert in_forked_child(lambda: (release_in_child(), slow(4) == 4)[1]) == 0
    finally:
        release.set()
        leader.join(5)
