"""Failures in the middle of a chunk: every item keeps its slot and runs exactly as often as it
should, whether the chunk's fast path (one C-level ``map`` over the items) is interrupted
once, many times, at its first item or at its last.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from opmap_helpers import fail_on_sevens, lines

from opero import AllFailedError, opmap

ITEMS = list(range(60))  # failing items at positions 3, 10, ..., 59: inside, first and last
FAILING = {x for x in ITEMS if x % 7 == 3}


@pytest.mark.parametrize("chunk_size", [1, 7, 8, 60])
@pytest.mark.parametrize("retries", [0, 2])
@pytest.mark.parametrize("extra", [False, True])
def test_failures_keep_their_slots_and_call_counts(
    tmp_path: Path, chunk_size: int, retries: int, extra: bool
) -> None:
    log = tmp_path / "calls"
    mapped = opmap(
        mode="process",
        workers=2,
        chunk_size=chunk_size,
        retries=retries,
        min_delay=0.001,
        max_delay=0.001,
        progress=False,
    )(fail_on_sevens)
    args, kwargs = ((5,), {"scale": 3}) if extra else ((), {})
    results = mapped(ITEMS, str(log), *args, **kwargs)
    for x, result in zip(ITEMS, results, strict=True):
        if x in FAILING:
            assert isinstance(result, AllFailedError), (x, result)
            assert [str(e) for e in result.errors] == [f"item {x}"] * (retries + 1)
        else:
            assert result == ((x + 5) * 3 if extra else x), (x, result)
    calls = Counter(int(line) for line in lines(log))
    assert calls == {x: retries + 1 if x in FAILING else 1 for x in ITEMS}
