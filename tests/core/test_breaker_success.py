"""A breaker's success path: lock-free once it cannot open, the same rules as the locked one.

``BreakerState.success`` is the ``append`` of the outcomes' deque where a success
changes nothing but the window (closed, count window holding ``minimum_calls``
outcomes, or no window); the streak of failures is then ended by the failure that
follows a success.  These pin what that must keep: the streak rule, late successes
of calls let through before an open, and the ratio on a window filled by a success.
"""

from __future__ import annotations

import threading
from typing import Any

from opero import Breaker
from opero.core.breaker_state import BreakerState
from opero.core.breaker_window import FAILED, CountWindow


def machine(**settings: Any) -> BreakerState:
    return BreakerState(Breaker(**settings))


def feed(state: BreakerState, outcomes: str, start: float = 0.0) -> list[Any]:
    return [state.record(start + k, failed=c == "F") for k, c in enumerate(outcomes)]


def test_a_success_on_the_lock_free_path_ends_a_streak() -> None:
    state = machine(failure_threshold=2, failure_ratio=0.9, window_calls=4, minimum_calls=2)
    assert feed(state, "SS") == [None, None]  # the window holds its minimum: lock-free now
    assert feed(state, "FSFS", start=2) == [None] * 4
    assert state.state(6.0) == "closed"
    assert feed(state, "FF", start=6) == [None, "open"]


def test_successes_without_a_window_end_a_streak_too() -> None:
    state = machine(failure_threshold=2, failure_ratio=None)
    assert feed(state, "FSFSFS") == [None] * 6
    assert feed(state, "FF", start=6) == [None, "open"]


def test_a_late_success_after_an_open_stays_out_of_the_next_window() -> None:
    config = {"failure_threshold": None, "failure_ratio": 0.5, "window_calls": 4}
    state = machine(**config, minimum_calls=2, cooldown=10)
    feed(state, "SS")
    late = state.success  # a call let through while it was closed, still running
    assert feed(state, "FF", start=2) == [None, "open"]  # S S F F: 2 of 4
    for k in range(10):
        late(4.0 + k)  # its success arrives after the open: dropped
    assert state.state(5.0) == "open"
    assert state.acquire(14.0) is True  # half-open
    assert state.record(14.0, failed=False) == "closed"
    # A fresh window: one failure, then a success reaching the minimum at 1 of 2.
    # Had the late successes landed in it, that would be 1 of 4, under the ratio.
    assert feed(state, "FS", start=15) == [None, "open"]


def test_a_success_that_fills_the_window_still_opens_it() -> None:
    state = machine(failure_threshold=None, window_calls=10, minimum_calls=4)
    assert feed(state, "FSF") == [None] * 3
    assert state.record(3.0, failed=False) == "open"  # 2 of 4 (resilience4j)


def test_failures_are_counted_by_identity_whatever_a_success_holds() -> None:
    window = CountWindow(size=4, ratio=0.5, minimum=2)
    for held in (1.0, True, 0, None):  # what a lock-free success may append
        window.ring.append(held)
    assert not window.reached()  # 0 of 4: 1.0 == True, but neither is FAILED
    window.ring.append(FAILED)
    window.ring.append(FAILED)
    assert window.reached()


def test_threads_mixing_outcomes_open_it_once_and_lose_no_failure() -> None:
    state = machine(failure_threshold=None, failure_ratio=0.5, window_calls=100, minimum_calls=100)
    changes: list[tuple[str, str]] = []
    state = BreakerState(state.config, on_change=lambda old, new: changes.append((old, new)))
    feed(state, "S" * 100)  # full: successes are lock-free from here

    def run(failed: bool) -> None:
        for k in range(2000):
            state.record(float(k), failed=failed)

    threads = [threading.Thread(target=run, args=(k % 2 == 0,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Half the outcomes fail: the window reaches 50 % and opens, exactly once (the
    # successes recorded after the open are late and change nothing).
    assert changes == [("closed", "open")]
    assert state.state(0.0) == "open"
