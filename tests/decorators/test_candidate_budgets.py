"""``candidate_rate_limit=`` and ``fallback_strategy=`` (issue 14, CONTRACT 35), on the fake clock.

Each candidate has its own limiter, so three keys of 10 calls/s deliver about 30/s
with none above its own rate; the strategy picks which key a call goes to.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from opero import opero
from opero.testing import FakeClock

KEYS = ["sk-a", "sk-b", "sk-c"]


def _busiest_second(starts: list[float]) -> int:
    """The most calls that started in any 1-s window (a window opening at each start)."""
    starts = sorted(starts)
    return max(sum(1 for t in starts[i:] if t < start + 1.0) for i, start in enumerate(starts))


def test_round_robin_spreads_calls_evenly(clock: FakeClock) -> None:
    used: list[str] = []

    @opero(arg_fallback="key", fallback_strategy="round_robin")
    def fetch(key: list[str] = KEYS) -> str:
        used.append(key[0])
        return key[0]

    for _ in range(30):
        fetch()
    assert Counter(used) == {"sk-a": 10, "sk-b": 10, "sk-c": 10}
    assert used[:3] == KEYS


def test_ordered_stays_on_the_first_key(clock: FakeClock) -> None:
    used: list[str] = []

    @opero(arg_fallback="key", candidate_breaker=True)
    def fetch(key: list[str] = KEYS) -> str:
        used.append(key[0])
        return key[0]

    for _ in range(5):
        fetch()
    assert used == ["sk-a"] * 5


def test_least_loaded_prefers_the_key_whose_next_slot_is_earliest(clock: FakeClock) -> None:
    used: list[str] = []

    @opero(arg_fallback="key", fallback_strategy="least_loaded", candidate_rate_limit=1)
    def fetch(key: list[str] = KEYS) -> str:
        used.append(key[0])
        return key[0]

    fetch()
    clock.advance(0.5)
    fetch()
    clock.advance(0.25)
    fetch()  # at 0.75: every key was used once; no wait
    assert sorted(used) == sorted(KEYS)
    assert clock.sleeps == []
    fetch()  # every slot is taken: the earliest is the first key used, free at 1.0
    assert used[3] == used[0]
    assert clock.sleeps == [pytest.approx(0.25)]


def test_three_keys_deliver_their_summed_rate_from_gather(clock: FakeClock) -> None:
    starts: dict[str, list[float]] = {key: [] for key in KEYS}

    @opero(arg_fallback="key", fallback_strategy="least_loaded", candidate_rate_limit=10)
    async def fetch(key: list[str] = KEYS) -> str:
        starts[key[0]].append(clock.now())
        return key[0]

    async def main() -> None:
        await asyncio.gather(*(fetch() for _ in range(300)))

    asyncio.run(main())
    everything = [t for times in starts.values() for t in times]
    assert len(everything) == 300
    span = max(everything) - min(everything)
    assert 300 / max(span, 1e-9) >= 28.5  # 0.95 x 3 keys x 10/s
    for times in starts.values():
        assert _busiest_second(times) <= 10 + 1  # its own rate (+ burst)


def test_three_keys_deliver_their_summed_rate_sequentially(clock: FakeClock) -> None:
    starts: dict[str, list[float]] = {key: [] for key in KEYS}

    @opero(arg_fallback="key", candidate_rate_limit=10)  # "ordered": a free key first
    def fetch(key: list[str] = KEYS) -> str:
        starts[key[0]].append(clock.now())
        return key[0]

    began = clock.now()
    while clock.now() - began < 10.0:
        fetch()
    calls = sum(len(times) for times in starts.values())
    assert calls / 10.0 >= 28.5
    for times in starts.values():
        assert _busiest_second(times) <= 10 + 1


def test_a_failing_key_still_spends_its_own_slot_only(clock: FakeClock) -> None:
    starts: list[tuple[str, float]] = []

    @opero(arg_fallback="key", candidate_rate_limit=1, retries=0)
    def fetch(key: list[str] = KEYS[:2]) -> str:
        starts.append((key[0], clock.now()))
        if key[0] == "sk-a":
            raise ConnectionError
        return key[0]

    assert fetch() == "sk-b"  # both keys' first slots are free: no wait
    assert clock.sleeps == []
    assert [key for key, _ in starts] == ["sk-a", "sk-b"]


def test_a_thread_map_shares_the_functions_pool() -> None:
    from opero import opmap  # noqa: PLC0415 - this test only

    @opmap(
        mode="thread",
        workers=1,
        progress=False,
        arg_fallback="key",
        fallback_strategy="round_robin",
    )
    def fetch(item: int, key: list[str] = KEYS) -> str:
        return key[0]

    assert Counter(fetch(range(9))) == {"sk-a": 3, "sk-b": 3, "sk-c": 3}
