"""Rate limits count attempts (CONTRACT 31): every call that reaches the function takes a slot.

The server sees retries and fallback candidates too, so ``rate_limit=20`` with every
call failing once must not let it see 40 requests a second.  ``rate_limit_per="call"``
keeps one slot per decorated call; a cache hit takes none.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from typing import Any

from opero import opero
from opero.testing import FakeClock
from shells import Shell


def busiest_second(starts: list[float]) -> int:
    """The most starts in any window ``[t, t + 1)``, over windows starting at a start."""
    ordered = sorted(starts)
    return max(
        bisect.bisect_left(ordered, t + 1.0 - 1e-9) - index for index, t in enumerate(ordered)
    )


def fails_once_per_call(clock: FakeClock) -> tuple[Callable[[int], int], list[float]]:
    """``f(i)`` fails on its first attempt for each ``i`` and succeeds on the second."""
    starts: list[float] = []
    failed: set[int] = set()

    def f(i: int) -> int:
        starts.append(clock.now())
        if i not in failed:
            failed.add(i)
            raise ConnectionError("first attempt fails")
        return i

    return f, starts


def test_retries_take_a_slot_sequential(clock: FakeClock, shell: Shell) -> None:
    body, starts = fails_once_per_call(clock)
    f = opero(rate_limit=20, retries=1, min_delay=0)(shell.fn(body))
    for i in range(60):
        assert shell.call(f, i) == i
    assert len(starts) == 120
    assert busiest_second(starts) <= 21
    assert f.statistics().attempts == 120


def test_retries_take_a_slot_under_concurrency(clock: FakeClock) -> None:
    body, starts = fails_once_per_call(clock)

    @opero(rate_limit=20, retries=1, min_delay=0.1)
    async def f(i: int) -> int:
        return body(i)

    async def main() -> list[int]:
        return await asyncio.gather(*(f(i) for i in range(100)))

    assert asyncio.run(main()) == list(range(100))
    assert len(starts) == 200
    assert busiest_second(starts) <= 21


def test_fallback_candidates_take_a_slot(clock: FakeClock, shell: Shell) -> None:
    starts: list[float] = []

    def body(i: int, key: list[str]) -> str:
        starts.append(clock.now())
        if key[0] == "revoked":
            raise PermissionError("401")
        return key[0]

    f = opero(rate_limit=10, retries=0, arg_fallback="key")(shell.fn(body))
    for i in range(30):
        assert shell.call(f, i, ["revoked", "good"]) == "good"
    assert len(starts) == 60
    assert busiest_second(starts) <= 11


def test_rate_limit_per_call_gives_one_slot_per_call(clock: FakeClock, shell: Shell) -> None:
    body, starts = fails_once_per_call(clock)
    f = opero(rate_limit=20, retries=1, min_delay=0, rate_limit_per="call")(shell.fn(body))
    for i in range(60):
        shell.call(f, i)
    # Each call's retry follows its first attempt at once: twice the starts of the rate.
    assert busiest_second(starts) >= 39
    assert len(clock.sleeps) <= 60


def test_a_cache_hit_takes_no_slot(clock: FakeClock, shell: Shell) -> None:
    calls: list[float] = []

    def body(x: int) -> int:
        calls.append(clock.now())
        return x

    f = opero(cache=True, rate_limit=1)(shell.fn(body))
    assert shell.call(f, 1) == 1
    for _ in range(5):
        assert shell.call(f, 1) == 1
    assert clock.sleeps == []
    assert shell.call(f, 2) == 2  # a miss: the next slot, a second after the first
    assert clock.sleeps == [1.0]
    assert calls == [1000.0, 1001.0]


def test_the_first_slot_is_still_taken_once(clock: FakeClock, shell: Shell) -> None:
    seen: list[float] = []

    def body() -> None:
        seen.append(clock.now())

    f: Any = opero(rate_limit=2)(shell.fn(body))
    for _ in range(4):
        shell.call(f)
    assert seen == [1000.0, 1000.5, 1001.0, 1001.5]
