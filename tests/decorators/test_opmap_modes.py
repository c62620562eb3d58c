"""@opmap in every mode: input order, unordered completeness, imap, extra arguments."""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter

import pytest
from opmap_helpers import (
    ASYNC_MODES,
    MODES,
    acombine,
    ajittered_square,
    asleepy_square,
    asquare,
    combine,
    drain,
    jittered_square,
    pick,
    run,
    square,
)

from opero import opmap

ITEMS = list(range(12))
SQUARES = [x * x for x in ITEMS]


@pytest.mark.parametrize("mode", MODES)
def test_results_come_back_in_input_order(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(
        pick(mode, jittered_square, ajittered_square)
    )
    assert run(mapped, ITEMS) == SQUARES


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk_size", [1, 5])
def test_explicit_chunk_sizes_keep_order(mode: str, chunk_size: int) -> None:
    mapped = opmap(mode=mode, workers=2, chunk_size=chunk_size, progress=False)(
        pick(mode, square, asquare)
    )
    assert run(mapped, ITEMS) == SQUARES


@pytest.mark.parametrize("mode", MODES)
def test_unordered_returns_every_result_once(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, ordered=False, progress=False)(
        pick(mode, jittered_square, ajittered_square)
    )
    results = run(mapped, ITEMS)
    assert Counter(results) == Counter(SQUARES)


@pytest.mark.parametrize("mode", MODES)
def test_empty_input_gives_empty_list(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, square, asquare))
    assert run(mapped, []) == []


@pytest.mark.parametrize("mode", MODES)
def test_any_iterable_is_accepted(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, square, asquare))
    assert run(mapped, (x for x in ITEMS)) == SQUARES


@pytest.mark.parametrize("mode", MODES)
def test_imap_yields_in_input_order(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(
        pick(mode, jittered_square, ajittered_square)
    )
    iterator = mapped.imap(ITEMS)
    if mode in ASYNC_MODES:
        assert hasattr(iterator, "__aiter__")
        assert not hasattr(iterator, "__next__")
    else:
        assert hasattr(iterator, "__next__")
    assert drain(iterator) == SQUARES


@pytest.mark.parametrize("mode", MODES)
def test_imap_unordered_yields_every_result_once(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(
        pick(mode, jittered_square, ajittered_square)
    )
    iterator = mapped.imap_unordered(ITEMS)
    assert hasattr(iterator, "__aiter__") == (mode in ASYNC_MODES)
    assert Counter(drain(iterator)) == Counter(SQUARES)


@pytest.mark.parametrize("mode", MODES)
def test_extra_arguments_reach_every_item(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, combine, acombine))
    assert run(mapped, [1, 2, 3], 10, scale=3) == [33, 36, 39]
    assert drain(mapped.imap([1, 2], 100)) == [101, 102]
    assert Counter(drain(mapped.imap_unordered([1, 2], 0, scale=2))) == Counter([2, 4])


@pytest.mark.parametrize("mode", MODES)
def test_sync_modes_stay_sync_and_async_modes_are_coroutine_functions(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, square, asquare))
    assert inspect.iscoroutinefunction(mapped) == (mode in ASYNC_MODES)
    assert mapped.__name__ == pick(mode, square, asquare).__name__
    assert mapped.__wrapped__ is pick(mode, square, asquare)


def test_default_mode_is_thread_for_sync_and_async_for_async_def() -> None:
    sync_mapped = opmap(progress=False)(square)
    async_mapped = opmap(progress=False)(asquare)
    assert sync_mapped.__opmap__.mode == "thread"
    assert async_mapped.__opmap__.mode == "async"
    assert sync_mapped([1, 2]) == [1, 4]
    assert asyncio.run(async_mapped([1, 2])) == [1, 4]


def test_bare_decorator_works() -> None:
    @opmap
    def double(x: int) -> int:
        return 2 * x

    # progress defaults to None: a bar labelled "double" on a terminal, no summary line
    # elsewhere; the bar is not what this test is about.
    progress = double.__opmap__.progress
    assert (progress.label, progress.summary) == ("double", False)
    assert double.__opmap__.mode == "thread"


@pytest.mark.asyncio
async def test_async_mode_runs_on_the_callers_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    @opmap(mode="async", workers=2, progress=False)
    async def where(x: int) -> int:
        loops.append(asyncio.get_running_loop())
        return x

    assert await where([1, 2, 3]) == [1, 2, 3]
    assert loops == [asyncio.get_running_loop()] * 3


@pytest.mark.asyncio
async def test_async_imap_can_be_consumed_with_async_for() -> None:
    mapped = opmap(mode="async", workers=2, progress=False)(asquare)
    seen = [value async for value in mapped.imap([3, 1, 2])]
    assert seen == [9, 1, 4]


@pytest.mark.asyncio
async def test_async_process_mode_does_not_block_the_loop() -> None:
    mapped = opmap(mode="async_process", workers=2, progress=False)(asleepy_square)
    assert await mapped([0]) == [0]  # start the workers before counting ticks
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    try:
        assert await mapped([1, 2, 3]) == [1, 4, 9]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Items sleep 0.15 s in the workers; a map that blocked the loop would starve the ticker.
    assert ticks >= 5


@pytest.mark.parametrize("workers", [1, 3])
def test_async_mode_runs_at_most_workers_items_at_once(workers: int) -> None:
    current = peak = 0

    @opmap(mode="async", workers=workers, progress=False)
    async def tracked(x: int) -> int:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        await asyncio.sleep(0.01)
        current -= 1
        return x

    assert run(tracked, range(10)) == list(range(10))
    assert peak == workers


def test_thread_mode_runs_at_most_workers_items_at_once() -> None:
    import threading  # noqa: PLC0415
    import time  # noqa: PLC0415

    lock = threading.Lock()
    current = peak = 0

    @opmap(mode="thread", workers=3, chunk_size=1, progress=False)
    def tracked(x: int) -> int:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)
        time.sleep(0.01)
        with lock:
            current -= 1
        return x

    assert tracked(range(12)) == list(range(12))
    assert peak == 3
