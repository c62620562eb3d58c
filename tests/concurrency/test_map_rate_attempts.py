"""A map's rate limit counts every call that reaches the function, in every mode (issue 13).

With ``rate_limit=20`` (burst 1) and every item failing once, 15 items make 30 calls;
they must be spaced by the one limiter where the map is submitted, retries included,
so no 1-s window holds more than 21 starts (about 1.5 s of real time).  Before, a
process map's workers retried outside the limit (the parent took one slot per item).
Real time: the calls happen in other processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from map_timing import afailing_once, assert_rate_held, failing_once, starts

from opero import opmap

pytestmark = pytest.mark.timeout(60)

ITEMS = 15
SETTINGS = {
    "rate_limit": 20,
    "rate_limit_burst": 1,
    "retries": 2,
    "min_delay": 0.01,
    "progress": False,
}


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_sync_map_counts_retries_against_the_rate(mode: str, tmp_path: Path) -> None:
    mapped = opmap(mode=mode, workers=4, **SETTINGS)(failing_once(str(tmp_path)))
    results = mapped(list(range(ITEMS)))
    assert_rate_held(str(tmp_path), results, ITEMS)
    assert mapped.statistics().retries == ITEMS


@pytest.mark.parametrize("mode", ["async", "async_process"])
@pytest.mark.asyncio
async def test_async_map_counts_retries_against_the_rate(mode: str, tmp_path: Path) -> None:
    mapped = opmap(mode=mode, workers=4, **SETTINGS)(afailing_once(str(tmp_path)))
    results = await mapped(list(range(ITEMS)))
    assert_rate_held(str(tmp_path), results, ITEMS)
    assert mapped.statistics().retries == ITEMS


def test_one_slot_per_item_with_rate_limit_per_call(tmp_path: Path) -> None:
    """``rate_limit_per="call"``: one slot per item, as before: a retry waits for none."""
    settings = {**SETTINGS, "rate_limit_per": "call"}
    mapped = opmap(mode="process", workers=4, **settings)(failing_once(str(tmp_path)))
    assert mapped(list(range(ITEMS))) == list(range(ITEMS))
    times = [t for _, t in starts(str(tmp_path))]
    # 15 slots at 20/s span ~0.7 s; every retry follows its item's first call at once.
    assert max(times) - min(times) < 1.2
