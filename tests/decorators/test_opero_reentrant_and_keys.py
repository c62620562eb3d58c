"""A cached function that asks for its own key, and keys whose ``__hash__`` raises.

Single-flight makes concurrent callers of a missing key wait for one leader;
a leader that asks for the same key again must not wait for itself.  And a key
that cannot be hashed must never fail the call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from opero import CacheKeyWarning, opero
from shells import Shell

PATIENCE = 5.0


def test_a_sync_computation_that_asks_for_its_own_key_does_not_hang() -> None:
    runs: list[str] = []

    @opero(cache=True)
    def total(key: str) -> int:
        runs.append(key)
        if len(runs) == 1:
            return total(key) + 1  # the same key, the same thread, while computing it
        return 10

    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(total("k")), daemon=True)
    worker.start()
    worker.join(PATIENCE)
    assert not worker.is_alive(), "the re-entrant call waited for itself"
    assert outcome == [11]
    assert runs == ["k", "k"]

    # The key is not stuck: another thread gets the stored value at once.
    later: list[Any] = []
    other = threading.Thread(target=lambda: later.append(total("k")), daemon=True)
    other.start()
    other.join(PATIENCE)
    assert later == [11]
    assert runs == ["k", "k"]
    stats = total.statistics()
    assert (stats.calls, stats.cache_hits, stats.cache_misses, stats.attempts) == (3, 1, 2, 2)


def test_an_async_computation_that_awaits_its_own_key_does_not_hang() -> None:
    runs: list[str] = []

    @opero(cache=True)
    async def total(key: str) -> int:
        runs.append(key)
        if len(runs) == 1:
            return await total(key) + 1
        return 10

    async def main() -> tuple[int, int]:
        first = await asyncio.wait_for(total("k"), PATIENCE)
        return first, await asyncio.wait_for(total("k"), PATIENCE)

    assert asyncio.run(main()) == (11, 11)
    assert runs == ["k", "k"]


def test_a_task_started_by_the_computation_may_ask_for_the_same_key() -> None:
    # The child task would wait for its parent, which waits for the child.
    runs: list[str] = []

    @opero(cache=True)
    async def total(key: str) -> int:
        runs.append(key)
        if len(runs) == 1:
            child = asyncio.create_task(total(key))
            return await child + 1
        return 10

    async def main() -> int:
        return await asyncio.wait_for(total("k"), PATIENCE)

    assert asyncio.run(main()) == 11
    assert runs == ["k", "k"]


def test_other_threads_still_share_one_computation() -> None:
    # Re-entrancy is per thread: concurrent callers still wait for the leader.
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    @opero(cache=True)
    def slow(n: int) -> int:
        runs.append(n)
        started.set()
        release.wait(PATIENCE)
        return n * 2

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(4))) for _ in range(5)]
    threads[0].start()
    assert started.wait(PATIENCE)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert results == [8] * 5
    assert runs == [4]


class RaisingHash:
    """Equal by value, but its ``__hash__`` raises (as some ORM objects and proxies do)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RaisingHash) and other.value == self.value

    def __hash__(self) -> int:
        msg = "this object is not hashable right now"
        raise ValueError(msg)


class RaisingHashUnpicklable(RaisingHash):
    """A raising ``__hash__`` and no pickle either: no key can be built at all."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.lock = threading.Lock()


def test_an_argument_whose_hash_raises_is_cached_by_its_pickle(shell: Shell) -> None:
    runs: list[int] = []

    def body(item: RaisingHash) -> int:
        runs.append(item.value)
        return item.value + 1

    wrapped = opero(cache=True)(shell.fn(body))
    assert shell.call(wrapped, RaisingHash(1)) == 2
    assert shell.call(wrapped, RaisingHash(1)) == 2
    assert shell.call(wrapped, RaisingHash(2)) == 3
    assert runs == [1, 2]
    stats = wrapped.statistics()
    assert (stats.cache_hits, stats.cache_misses, stats.cache_errors) == (1, 2, 0)


def test_an_argument_with_no_key_at_all_runs_uncached(
    shell: Shell, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []

    def body(item: RaisingHash) -> int:
        runs.append(item.value)
        return item.value + 1

    wrapped = opero(cache=True)(shell.fn(body))
    with (
        caplog.at_level(logging.WARNING, logger="opero"),
        pytest.warns(CacheKeyWarning, match="parameter 'item'"),
    ):
        results = [shell.call(wrapped, RaisingHashUnpicklable(1)) for _ in range(2)]
    assert results == [2, 2]
    assert runs == [1, 1]
    assert wrapped.statistics().cache_errors >= 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, until a key works again
    assert "key" in warnings[0].getMessage()


def test_a_custom_key_whose_hash_raises_never_fails_the_call(shell: Shell) -> None:
    runs: list[int] = []

    def body(n: int) -> int:
        runs.append(n)
        return n

    wrapped = opero(cache=True, cache_key=lambda func, n: RaisingHash(n))(shell.fn(body))
    assert [shell.call(wrapped, 5) for _ in range(3)] == [5, 5, 5]
    assert runs == [5]
