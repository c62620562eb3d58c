"""Async maps finish items in any order; ordered results must still come back complete and in
input order (a regression: batches built in completion order once lost and swapped entries).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from opero import opmap


async def scrambled(x: int) -> int:
    """Later items often finish first: each item sleeps its own fixed 0-10 ms."""
    await asyncio.sleep(random.Random(x).random() / 100)
    return x * 10


@pytest.mark.parametrize("workers", [3, 10, 40])
def test_ordered_async_map_is_complete_and_in_order(workers: int) -> None:
    mapped = opmap(mode="async", workers=workers, progress=False)(scrambled)
    for _ in range(3):
        assert asyncio.run(mapped(list(range(120)))) == [x * 10 for x in range(120)]


def test_ordered_async_imap_is_complete_and_in_order() -> None:
    mapped = opmap(mode="async", workers=10, progress=False)(scrambled)

    async def collect() -> list[int]:
        return [value async for value in mapped.imap(range(120))]

    assert asyncio.run(collect()) == [x * 10 for x in range(120)]


def test_unordered_async_map_has_every_item_once() -> None:
    mapped = opmap(mode="async", workers=10, ordered=False, progress=False)(scrambled)
    results = asyncio.run(mapped(list(range(120))))
    assert sorted(results) == [x * 10 for x in range(120)]
    assert results != sorted(results)  # completion order really differs from input order
