"""A server's Retry-After seen by one item pauses the whole map, in every mode (issue 13).

Item 0's first call is refused with ``retry_after=0.6``; every other call takes 50 ms.
No call of any item may start inside the pause (beyond a 20 ms tolerance for the
clock reads), items already sent to workers included, and item 0 is retried only
after it.  With a rate limit the pause holds the map's limiter; without one, the
function's own pause (``PauseGate``), which the workers share.  Real time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from map_timing import arefused_once, assert_pause_held, refused_once

from opero import opmap

pytestmark = pytest.mark.timeout(60)

ITEMS = 12
RATES = [None, 100]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_sync_map_holds_the_pause(mode: str, rate: float | None, tmp_path: Path) -> None:
    mapped = opmap(mode=mode, workers=3, rate_limit=rate, retries=1, progress=False)(
        refused_once(str(tmp_path))
    )
    assert_pause_held(str(tmp_path), mapped(list(range(ITEMS))), ITEMS)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("mode", ["async", "async_process"])
@pytest.mark.asyncio
async def test_async_map_holds_the_pause(mode: str, rate: float | None, tmp_path: Path) -> None:
    mapped = opmap(mode=mode, workers=3, rate_limit=rate, retries=1, progress=False)(
        arefused_once(str(tmp_path))
    )
    assert_pause_held(str(tmp_path), await mapped(list(range(ITEMS))), ITEMS)


def test_thread_map_of_quick_items_holds_the_pause(tmp_path: Path) -> None:
    """The thread fast path (plain calls in C, no rate limit): items of 3 ms each."""
    mapped = opmap(mode="thread", workers=3, retries=1, progress=False)(
        refused_once(str(tmp_path), work=0.003)
    )
    assert_pause_held(str(tmp_path), mapped(list(range(60))), 60)
