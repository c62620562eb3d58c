"""@opmap ``imap``: a bounded number of items in flight, so endless inputs work."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest
from opmap_helpers import (
    ASYNC_MODES,
    MODES,
    aslow_zero,
    asquare,
    bounded_count,
    pick,
    slow_zero,
    square,
    take,
)

from opero import opmap

TAKE = 1000
#: How far ahead of the consumer the map may read: a few chunks per worker, never the input.
AHEAD = 2000


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_endless_input_is_consumed_lazily(mode: str, method: str) -> None:
    pulled = [0]
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, square, asquare))
    # The source raises after 50,000 items: a map that reads everything fails fast instead
    # of filling memory.
    source = bounded_count(50_000, pulled)

    began = time.monotonic()
    taken = take(getattr(mapped, method)(source), TAKE)
    elapsed = time.monotonic() - began

    assert len(taken) == TAKE
    if method == "imap":
        assert taken == [x * x for x in range(TAKE)]
    else:
        assert len(set(taken)) == TAKE
    assert pulled[0] < TAKE + AHEAD, f"read {pulled[0]} items to yield {TAKE}"
    assert elapsed < 10.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
def test_ordered_imap_stays_bounded_behind_a_slow_item(mode: str) -> None:
    # Item 0 takes half a second.  An ordered imap cannot yield anything before it, so it must
    # stop reading ahead after a bounded number of items instead of buffering results.
    pulled = [0]
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, slow_zero, aslow_zero))
    taken = take(mapped.imap(bounded_count(20_000, pulled)), 10)
    assert taken == list(range(10))
    assert pulled[0] < 3000, f"read {pulled[0]} items to yield 10"


def test_ordered_imap_of_a_long_input_matches_the_input() -> None:
    mapped = opmap(mode="thread", workers=2, progress=False)(square)
    assert take(mapped.imap(range(5000)), 5000) == [x * x for x in range(5000)]


def test_thread_imap_stops_working_once_the_consumer_leaves() -> None:
    lock = threading.Lock()
    calls = [0]

    @opmap(mode="thread", workers=2, chunk_size=1, progress=False)
    def work(x: int) -> int:
        with lock:
            calls[0] += 1
        time.sleep(0.005)
        return x

    iterator = work.imap(itertools.count())
    assert list(itertools.islice(iterator, 10)) == list(range(10))
    iterator.close()
    time.sleep(0.05)
    settled = calls[0]
    time.sleep(0.1)
    assert calls[0] == settled, "items kept running after the iterator was closed"
    assert settled < 10 + 10


@pytest.mark.parametrize("mode", MODES)
def test_imap_results_are_yielded_before_the_input_ends(mode: str) -> None:
    # The first results arrive while the source is still being produced.
    produced: list[int] = []
    seen_with: list[int] = []

    def source() -> Any:
        for x in range(2000):
            produced.append(x)
            yield x

    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, square, asquare))
    iterator = mapped.imap(source())
    if mode in ASYNC_MODES:

        async def first() -> None:
            async for _ in iterator:
                seen_with.append(len(produced))
                break
            await iterator.aclose()

        asyncio.run(first())
    else:
        next(iterator)
        seen_with.append(len(produced))
        iterator.close()
    assert seen_with[0] < 2000
