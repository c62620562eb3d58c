"""@opmap ``should_process``: once it says stop, items not yet started come back cancelled.

Nothing is dropped (CONTRACT 18-19): the result always has one entry per item.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from opmap_helpers import (
    MODES,
    PROCESS_MODES,
    alogged_square,
    anap,
    bounded_count,
    lines,
    logged_square,
    nap,
    pick,
    run,
    take,
)

from opero import CancelledItemError, opmap


def test_thread_mode_stops_after_n_items_with_one_worker() -> None:
    started: list[int] = []

    @opmap(mode="thread", workers=1, progress=False, should_process=lambda: len(started) < 3)
    def work(x: int) -> int:
        started.append(x)
        return x * 2

    results = work(range(10))
    assert len(results) == 10
    assert results[:3] == [0, 2, 4]
    assert all(isinstance(r, CancelledItemError) for r in results[3:])
    assert started == [0, 1, 2]


def test_async_mode_stops_after_n_items_with_one_worker() -> None:
    started: list[int] = []

    @opmap(mode="async", workers=1, progress=False, should_process=lambda: len(started) < 3)
    async def work(x: int) -> int:
        started.append(x)
        await asyncio.sleep(0)
        return x * 2

    results = run(work, range(10))
    assert len(results) == 10
    assert results[:3] == [0, 2, 4]
    assert all(isinstance(r, CancelledItemError) for r in results[3:])
    assert started == [0, 1, 2]


def test_thread_mode_with_several_workers_cancels_the_rest() -> None:
    lock = threading.Lock()
    started: list[int] = []

    def keep_going() -> bool:
        with lock:
            return len(started) < 4

    @opmap(mode="thread", workers=3, chunk_size=1, progress=False, should_process=keep_going)
    def work(x: int) -> int:
        with lock:
            started.append(x)
        time.sleep(0.01)
        return x * 2

    results = work(range(30))
    assert len(results) == 30
    done = {i for i, r in enumerate(results) if not isinstance(r, CancelledItemError)}
    assert done == set(started)
    assert all(results[i] == 2 * i for i in done)
    # A check can race a start on another thread, but never by more than the workers.
    assert 4 <= len(done) < 4 + 3


@pytest.mark.parametrize("mode", sorted(PROCESS_MODES))
def test_process_modes_cancel_what_has_not_started(mode: str, tmp_path: Path) -> None:
    ran = tmp_path / "ran.txt"
    mapped = opmap(
        mode=mode,
        workers=2,
        chunk_size=1,
        progress=False,
        should_process=lambda: len(lines(ran)) < 2,
    )(pick(mode, nap, anap))

    items = [0.05] * 24
    results = run(mapped, items, str(ran))
    assert len(results) == len(items)
    done = [r for r in results if not isinstance(r, CancelledItemError)]
    cancelled = [r for r in results if isinstance(r, CancelledItemError)]
    assert done == [0.05] * len(done)
    assert len(done) == len(lines(ran)), "an item ran but was reported cancelled, or vice versa"
    assert cancelled, "should_process said stop but every item ran"


@pytest.mark.parametrize("mode", MODES)
def test_should_process_false_from_the_start_runs_nothing(mode: str, tmp_path: Path) -> None:
    ran = tmp_path / "ran.txt"
    mapped = opmap(mode=mode, workers=2, progress=False, should_process=lambda: False)(
        pick(mode, logged_square, alogged_square)
    )
    results = run(mapped, range(7), str(ran))
    assert len(results) == 7
    assert all(isinstance(r, CancelledItemError) for r in results)
    assert lines(ran) == []


@pytest.mark.parametrize("mode", MODES)
def test_cancelled_items_are_reported_unordered_too(mode: str, tmp_path: Path) -> None:
    mapped = opmap(
        mode=mode, workers=2, ordered=False, progress=False, should_process=lambda: False
    )(pick(mode, logged_square, alogged_square))
    results = run(mapped, range(5), str(tmp_path / "ran.txt"))
    assert len(results) == 5
    assert all(isinstance(r, CancelledItemError) for r in results)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("mode", MODES)
def test_imap_of_an_endless_source_stays_lazy_after_stop(mode: str) -> None:
    pulled = [0]
    mapped = opmap(mode=mode, workers=2, progress=False, should_process=lambda: False)(
        pick(mode, logged_square, alogged_square)
    )
    iterator = mapped.imap(bounded_count(50_000, pulled), "/dev/null")
    first = take(iterator, 5)
    assert len(first) == 5
    assert all(isinstance(r, CancelledItemError) for r in first)
    assert pulled[0] < 5_000


@pytest.mark.parametrize(
    "mode",
    MODES,
)
def test_should_process_is_checked_before_each_item_even_in_chunks(
    mode: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.txt"
    checks: list[None] = []

    def first_check_only() -> bool:
        checks.append(None)
        return len(checks) == 1

    mapped = opmap(
        mode=mode, workers=1, chunk_size=4, progress=False, should_process=first_check_only
    )(pick(mode, logged_square, alogged_square))
    results = run(mapped, range(8), str(ran))
    assert results[0] == 0
    assert all(isinstance(r, CancelledItemError) for r in results[1:]), results
    assert len(lines(ran)) == 1
