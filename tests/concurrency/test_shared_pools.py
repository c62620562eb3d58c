"""Process pools are shared between maps: reuse across calls, ``workers`` honoured,
and one map's trouble (a timeout, an abandoned imap) never fails another map's items.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from worker_helpers import pid_after, square

from opero import opmap

pytestmark = pytest.mark.timeout(40)


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_pool_is_reused_across_calls_and_functions() -> None:
    def other(seconds: float) -> int:
        return pid_after(seconds)

    first = opmap(mode="process", workers=2, chunk_size=1, progress=False)(pid_after)
    second = opmap(mode="process", workers=2, chunk_size=1, progress=False)(other)
    pids = set(first([0.1] * 4))
    assert len(pids) == 2
    assert set(first([0.1] * 4)) == pids
    assert set(second([0.1] * 4)) == pids


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_is_the_number_of_processes(workers: int) -> None:
    mapped = opmap(mode="process", workers=workers, chunk_size=1, progress=False)(pid_after)
    began = time.monotonic()
    pids = mapped([0.2] * (2 * workers))
    elapsed = time.monotonic() - began
    assert len(set(pids)) == workers
    assert elapsed >= 0.4  # two rounds: never more than `workers` at once


def test_concurrent_maps_from_two_threads_both_complete() -> None:
    mapped = opmap(mode="process", workers=2, progress=False)(square)
    results: dict[str, Any] = {}

    def run(name: str, items: range) -> None:
        results[name] = mapped(items)

    threads = [
        threading.Thread(target=run, args=(name, range(start, start + 50)))
        for name, start in (("a", 0), ("b", 100))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results["a"] == [x * x for x in range(50)]
    assert results["b"] == [x * x for x in range(100, 150)]


def _beside(trouble: Any) -> tuple[Any, list[Any]]:
    """Run ``trouble()`` in a thread while an innocent one-item map runs here."""
    innocent = opmap(mode="process", workers=2, retries=0, progress=False)(_nap)
    assert innocent([0.0, 0.0]) == [0.0, 0.0]  # the shared pool is up
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("trouble", trouble()))
    thread.start()
    time.sleep(0.2)
    mine = innocent([1.0])
    thread.join(20)
    return outcome.get("trouble"), mine


def test_a_timeout_in_one_map_does_not_fail_another_maps_items() -> None:
    stuck = opmap(mode="process", workers=2, timeout=0.5, progress=False)(_nap)
    trouble, mine = _beside(lambda: stuck([3.0]))
    assert isinstance(trouble[0], TimeoutError)
    assert mine == [1.0]


def test_an_abandoned_imap_does_not_fail_another_maps_items() -> None:
    slow = opmap(mode="process", workers=2, chunk_size=1, progress=False)(_nap)

    def abandon() -> list[float]:
        iterator = slow.imap(itertools.chain([0.3], itertools.repeat(1.0, 3)))
        first = list(itertools.islice(iterator, 1))
        iterator.close()
        return first

    trouble, mine = _beside(abandon)
    assert trouble == [0.3]
    assert mine == [1.0]
