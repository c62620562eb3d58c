"""@opmap ``timeout``: a late item gets TimeoutError in its slot; the rest finish; nothing hangs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from opmap_helpers import anap, lines, nap, run

from opero import DeadlineExceeded, opmap
from process_checks import wait_until_gone


def test_thread_mode_late_item_times_out_and_others_finish() -> None:
    release = threading.Event()

    @opmap(mode="thread", workers=2, timeout=0.3, progress=False)
    def work(x: int) -> int:
        if x == 2:
            release.wait(10)
        return x * 10

    try:
        began = time.monotonic()
        results = work([0, 1, 2, 3, 4])
        elapsed = time.monotonic() - began
    finally:
        release.set()  # free the stuck pool thread for later tests
    assert results[:2] == [0, 10]
    assert results[3:] == [30, 40]
    assert isinstance(results[2], TimeoutError)
    assert 0.25 <= elapsed < 2.0


def test_thread_mode_timeout_counts_from_the_items_start_not_its_submission() -> None:
    # One worker, items of 0.2 s each, timeout 0.3 s: queued items must not be charged for
    # the time they waited behind the others.
    @opmap(mode="thread", workers=1, timeout=0.3, progress=False)
    def work(x: int) -> int:
        time.sleep(0.2)
        return x

    assert work([1, 2, 3]) == [1, 2, 3]


def test_thread_mode_timeout_with_imap_unordered() -> None:
    release = threading.Event()

    @opmap(mode="thread", workers=2, timeout=0.3, progress=False)
    def work(x: int) -> int:
        if x == 0:
            release.wait(10)
        return x

    try:
        results = list(work.imap_unordered([0, 1, 2]))
    finally:
        release.set()
    assert sorted(r for r in results if isinstance(r, int)) == [1, 2]
    assert sum(isinstance(r, TimeoutError) for r in results) == 1
    assert results[-1].__class__ is DeadlineExceeded  # the stuck one finishes last


@pytest.mark.timeout(60)
def test_process_mode_stuck_item_times_out_and_its_worker_is_replaced(tmp_path: Path) -> None:
    # A process item's timeout counts from when its chunk is sent, so it also covers the
    # hand-over to a worker and the result's way back: on a loaded machine that alone can
    # take a good part of a second.  The quick items therefore get a timeout 40 times their
    # length, and the stuck one sleeps 15 times beyond it, so neither can be mistaken for
    # the other however slow the machine is.
    pids = tmp_path / "pids.txt"
    mapped = opmap(mode="process", workers=2, timeout=2.0, progress=False)(nap)

    began = time.monotonic()
    results = mapped([0.0, 0.05, 30.0, 0.0, 0.05], str(pids))
    elapsed = time.monotonic() - began

    assert isinstance(results[2], TimeoutError)
    assert [results[i] for i in (0, 1, 3, 4)] == [0.0, 0.05, 0.0, 0.05]
    assert elapsed < 15.0  # half the stuck item's sleep: the map did not wait for it
    # The worker stuck in its 30 s sleep does not live on.
    first = {int(pid) for pid in lines(pids)}
    assert wait_until_gone(first) == set()

    # The same function maps again, on a fresh pool: none of its workers is an old one.
    again = tmp_path / "again.txt"
    assert mapped([0.2, 0.2, 0.2, 0.2], str(again)) == [0.2] * 4
    fresh = {int(pid) for pid in lines(again)}
    assert 1 <= len(fresh) <= 2
    assert not fresh & first


@pytest.mark.timeout(20)
def test_process_mode_items_within_the_timeout_are_untouched() -> None:
    mapped = opmap(mode="process", workers=2, timeout=2.0, progress=False)(nap)
    assert mapped([0.01, 0.02, 0.03]) == [0.01, 0.02, 0.03]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("mode", ["async", "async_process"])
def test_async_modes_late_item_times_out(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, timeout=0.3, progress=False)(anap)
    began = time.monotonic()
    results = run(mapped, [0.0, 5.0, 0.01])
    elapsed = time.monotonic() - began
    assert results[0] == 0.0
    assert results[2] == 0.01
    assert isinstance(results[1], TimeoutError)
    assert elapsed < 3.0
    # and the function still maps afterwards
    assert run(mapped, [0.0, 0.01]) == [0.0, 0.01]


def test_timeout_is_per_item_and_not_retried_into_a_hang() -> None:
    release = threading.Event()

    @opmap(mode="thread", workers=1, timeout=0.2, retries=2, progress=False)
    def work(x: int) -> int:
        release.wait(5)
        return x

    began = time.monotonic()
    try:
        [result] = work([7])
    finally:
        release.set()
    assert isinstance(result, TimeoutError)
    assert time.monotonic() - began < 2.0


def test_thread_mode_items_behind_stuck_threads_still_run() -> None:
    release = threading.Event()

    @opmap(mode="thread", workers=2, timeout=0.3, progress=False)
    def work(x: int) -> int:
        if x < 2:
            release.wait(1.5)
        return x

    began = time.monotonic()
    try:
        results = work([0, 1, 2, 3])
        elapsed = time.monotonic() - began
    finally:
        release.set()
    assert all(isinstance(r, TimeoutError) for r in results[:2])
    assert results[2:] == [2, 3]
    assert elapsed < 1.0


def test_thread_mode_survives_stuck_threads_twice_over() -> None:
    """Two waves of stuck items (four threads lost) and the rest still runs on time."""
    release = threading.Event()
    calls: list[int] = []

    @opmap(mode="thread", workers=2, timeout=0.2, progress=False)
    def work(x: int) -> int:
        calls.append(x)
        if x < 4:
            release.wait(2.0)
        return x * 10

    began = time.monotonic()
    try:
        results = work(list(range(8)))
        elapsed = time.monotonic() - began
    finally:
        release.set()
    assert [type(r) for r in results[:4]] == [DeadlineExceeded] * 4
    assert results[4:] == [40, 50, 60, 70]
    assert sorted(calls) == list(range(8))  # every item ran once, none twice
    assert elapsed < 1.5
