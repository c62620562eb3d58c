"""@opmap keeps the cache and the rate limit in the parent in process modes (CONTRACT 17, 22).

Runs of the function are counted as lines in a file, since they happen in
worker processes; start times are wall-clock seconds, comparable across processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opmap_helpers import (
    MODES,
    PROCESS_MODES,
    afail_on_three,
    alogged_square,
    astarted_at,
    fail_on_three,
    lines,
    logged_square,
    pick,
    pid_after,
    run,
    started_at,
)

from opero import AllFailedError, opmap


@pytest.mark.parametrize("mode", MODES)
def test_second_map_is_served_from_the_cache(mode: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    hits: list[None] = []
    mapped = opmap(
        mode=mode,
        workers=2,
        progress=False,
        cache=True,
        cache_namespace=f"opmap-{tmp_path.name}",
        on_cache_hit=lambda: hits.append(None),
    )(pick(mode, logged_square, alogged_square))

    assert run(mapped, [1, 2, 3], str(runs)) == [1, 4, 9]
    assert len(lines(runs)) == 3
    assert run(mapped, [1, 2, 3], str(runs)) == [1, 4, 9]
    assert len(lines(runs)) == 3, "a cached item ran again"
    stats = mapped.statistics()
    assert stats.cache_hits == 3
    assert stats.cache_misses == 3
    assert len(hits) == 3  # the callback fires where the cache is: in this process


@pytest.mark.parametrize("chunk_size", [1, None])
@pytest.mark.parametrize("mode", MODES)
def test_duplicates_in_one_map_run_once(mode: str, chunk_size: int | None, tmp_path: Path) -> None:
    """With a cache, an item repeated in one map is computed once, in every mode."""
    runs = tmp_path / "runs.txt"
    mapped = opmap(
        mode=mode,
        workers=2,
        chunk_size=chunk_size,
        progress=False,
        cache=True,
        cache_namespace=f"dup-{tmp_path.name}",
    )(pick(mode, logged_square, alogged_square))
    items = [1, 2, 1, 3, 2, 1, 3, 3]
    assert run(mapped, items, str(runs)) == [x * x for x in items]
    ran = sorted(int(line.split()[1]) for line in lines(runs))
    assert ran == [1, 2, 3]
    assert mapped.statistics().cache_hits == 5


@pytest.mark.parametrize("mode", sorted(PROCESS_MODES))
def test_duplicates_share_their_leaders_error(mode: str, tmp_path: Path) -> None:
    """Like @opero's single-flight: waiting duplicates get the computation's exception too."""
    runs = tmp_path / "runs.txt"
    mapped = opmap(
        mode=mode,
        workers=2,
        chunk_size=1,
        retries=1,
        min_delay=0.001,
        progress=False,
        cache=True,
        retry_on=ConnectionError,
    )(pick(mode, fail_on_three, afail_on_three))
    results = run(mapped, [3, 1, 3, 3], str(runs))
    assert results[1] == 1
    failures = [results[0], results[2], results[3]]
    assert all(isinstance(r, AllFailedError) for r in failures), failures
    assert sorted(int(line) for line in lines(runs)) == [1, 3, 3]  # 3: two attempts, once


@pytest.mark.parametrize("mode", sorted(PROCESS_MODES))
def test_only_missing_items_go_to_the_workers(mode: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = opmap(mode=mode, workers=2, progress=False, cache=True)(
        pick(mode, logged_square, alogged_square)
    )
    assert run(mapped, [1, 2], str(runs)) == [1, 4]
    assert run(mapped, [2, 3, 1, 4], str(runs)) == [4, 9, 1, 16]
    ran = sorted(int(line.split()[1]) for line in lines(runs))
    assert ran == [1, 2, 3, 4]
    assert mapped.statistics().cache_hits == 2


@pytest.mark.parametrize("mode", sorted(PROCESS_MODES))
def test_cache_hits_and_misses_keep_input_order(mode: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = opmap(mode=mode, workers=2, chunk_size=2, progress=False, cache=True)(
        pick(mode, logged_square, alogged_square)
    )
    run(mapped, [0, 2, 4, 6], str(runs))
    items = list(range(8))
    assert run(mapped, items, str(runs)) == [x * x for x in items]
    assert len(lines(runs)) == 8


@pytest.mark.parametrize("mode", sorted(PROCESS_MODES))
def test_cache_clear_makes_items_run_again(mode: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = opmap(mode=mode, workers=2, progress=False, cache=True)(
        pick(mode, logged_square, alogged_square)
    )
    run(mapped, [1, 2], str(runs))
    mapped.cache_clear()
    run(mapped, [1, 2], str(runs))
    assert len(lines(runs)) == 4


def _warm_two_workers() -> None:
    """Start both processes of the shared 2-worker pool so start-up does not skew timings."""
    warm = opmap(mode="process", workers=2, chunk_size=1, progress=False)(pid_after)
    pids = warm([0.15] * 4)
    assert len(set(pids)) == 2


@pytest.mark.parametrize("mode", sorted(PROCESS_MODES))
def test_rate_limit_holds_across_two_worker_processes(mode: str) -> None:
    _warm_two_workers()
    mapped = opmap(mode=mode, workers=2, progress=False, rate_limit=20)(
        pick(mode, started_at, astarted_at)
    )
    began = time.time()  # the items report wall-clock time, comparable across processes
    starts = sorted(run(mapped, range(10)))
    elapsed = time.time() - began

    # 20 calls/s: the k-th start (whichever worker runs it) comes at least k * 0.05 s after
    # the map began.  (Gaps between neighbours are no measure: an item that reached its
    # worker late shortens the gap to the next one without any limit being broken.)
    for k, at in enumerate(starts):
        assert at - began >= k * 0.05 - 0.002, (k, at - began)
    assert elapsed < 1.0
    assert mapped.statistics().waited > 0.3


def test_rate_limit_in_thread_mode_spaces_starts() -> None:
    mapped = opmap(mode="thread", workers=4, progress=False, rate_limit=20)(started_at)
    began = time.time()
    starts = sorted(mapped(range(6)))
    for k, at in enumerate(starts):
        assert at - began >= k * 0.05 - 0.002, (k, at - began)


def test_rate_limit_in_async_mode_spaces_starts() -> None:
    mapped = opmap(mode="async", workers=4, progress=False, rate_limit=20)(astarted_at)
    began = time.time()
    starts = sorted(run(mapped, range(6)))
    for k, at in enumerate(starts):
        assert at - began >= k * 0.05 - 0.002, (k, at - began)


@pytest.mark.parametrize("mode", sorted(PROCESS_MODES))
def test_cache_hits_take_no_rate_limit_token(mode: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = opmap(mode=mode, workers=2, progress=False, cache=True, rate_limit=5)(
        pick(mode, logged_square, alogged_square)
    )
    run(mapped, [1, 2], str(runs))
    began = time.monotonic()
    assert run(mapped, [1, 2], str(runs)) == [1, 4]
    # Two hits would cost ~0.2-0.4 s of tokens at 5 calls/s if they were limited.
    assert time.monotonic() - began < 0.15
