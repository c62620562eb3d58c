"""Thread maps run a chunk through the plain function in C, and still behave item by item.

The fast path (``concurrency/items.py``) calls the function with ``map`` when
a success needs nothing else; these tests pin what it must not change: each
item's own outcome and counts, and a map the caller left stopping promptly
even when its chunks are large.
"""

from __future__ import annotations

import threading
import time

from opero import AllFailedError, CancelledItemError, opmap


def test_errors_stay_in_their_slots_and_every_call_is_counted() -> None:
    @opmap(mode="thread", workers=2, chunk_size=500, retries=1, min_delay=0, progress=False)
    def odd_fails(x: int) -> int:
        if x % 97 == 1:
            raise ValueError("odd one")
        return x * 2

    items = list(range(2000))
    results = odd_fails(items)
    for x, result in zip(items, results, strict=True):
        if x % 97 == 1:
            assert isinstance(result, AllFailedError)
        else:
            assert result == x * 2
    stats = odd_fails.statistics()
    failing = sum(1 for x in items if x % 97 == 1)
    assert stats.calls == len(items)
    assert stats.failures == failing
    assert stats.retries == failing
    assert stats.attempts == len(items) + failing


def test_a_chunk_stops_within_a_slice_once_its_map_is_left() -> None:
    """A thread cannot be stopped from outside: the chunk must look at the stop flag itself."""
    from opero.concurrency.items import run_sync_chunk  # noqa: PLC0415

    calls = [0]

    def work(x: int) -> int:
        calls[0] += 1
        time.sleep(0.002)
        return x

    call = opmap(mode="thread", progress=False)(work).__opmap__.shell
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    began = time.monotonic()
    values, failed, plain = run_sync_chunk(call, list(range(1000)), (), {}, stop)
    # 1,000 items of 2 ms would take 2 s; the map was left after 0.05 s.
    assert time.monotonic() - began < 1.0
    assert len(values) == 1000
    assert calls[0] == plain < 500
    assert failed == list(range(plain, 1000))
    assert all(isinstance(v, CancelledItemError) for v in values[plain:])
    assert values[:plain] == list(range(plain))
