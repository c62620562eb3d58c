"""``f(items)`` in thread mode: the fast path keeps every item's own outcome and stops on Ctrl-C.

``concurrency/thread_list.py`` runs a list through pool threads without the
general map loop, and ``items.Pace`` lets a map's later chunks skip relearning
their slice size.  These tests pin what speed must not change: each item's
result or error at its index, exact counts, a prompt stop, and the same
answers as the general loop gives for any other input.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable

import pytest

from opero import AllFailedError, opmap

pytestmark = pytest.mark.timeout(60)


class Boom(Exception):
    """Raised by the items chosen to fail; carries the item."""


BAD = frozenset({0, 7, 4_999, 12_345, 19_999})


def _sometimes(x: int) -> int:
    if x in BAD:
        raise Boom(x)
    return x * 3


def test_a_few_errors_in_20000_items_stay_at_their_index() -> None:
    # retry_on names another error, so a Boom comes back unwrapped, as itself.
    mapped = opmap(mode="thread", workers=2, progress=False, retry_on=(KeyError,))(_sometimes)
    items = list(range(20_000))
    results = mapped(items)
    assert len(results) == len(items)
    for x, result in zip(items, results, strict=True):
        if x in BAD:
            assert isinstance(result, Boom)
            assert result.args == (x,)
        else:
            assert result == x * 3
    stats = mapped.statistics()
    assert stats.calls == len(items)
    assert stats.failures == len(BAD)


def test_retried_errors_in_a_large_map_are_each_items_own() -> None:
    mapped = opmap(mode="thread", workers=2, progress=False, retries=1, min_delay=0)(_sometimes)
    results = mapped(tuple(range(20_000)))  # a tuple takes the same path as a list
    failed = {x for x, result in enumerate(results) if isinstance(result, AllFailedError)}
    assert failed == BAD
    for x in BAD:
        assert [type(e) for e in results[x].errors] == [Boom, Boom]
        assert all(e.args == (x,) for e in results[x].errors)
    assert mapped.statistics().attempts == 20_000 + len(BAD)


@pytest.mark.parametrize("chunk_size", [None, 1, 333])
def test_a_list_a_generator_and_imap_give_the_same_entries(chunk_size: int | None) -> None:
    mapped = opmap(
        mode="thread", workers=3, progress=False, chunk_size=chunk_size, retry_on=(KeyError,)
    )(_sometimes)
    items = [*range(2_000), 4_999, 7]

    def shown(entries: list[object]) -> list[object]:
        return [repr(e) if isinstance(e, Exception) else e for e in entries]

    expected = shown(mapped(items))
    assert shown(mapped(x for x in items)) == expected  # the general loop
    assert shown(list(mapped.imap(items))) == expected
    assert expected[:3] == [repr(Boom(0)), 3, 6]
    assert expected[-2:] == [repr(Boom(4_999)), repr(Boom(7))]


def test_an_empty_list_gives_an_empty_list() -> None:
    assert opmap(mode="thread", progress=False)(_sometimes)([]) == []


def test_ctrl_c_while_waiting_starts_no_further_item() -> None:
    started: list[int] = []
    first = threading.Event()
    release = threading.Event()

    @opmap(mode="thread", workers=1, chunk_size=1, progress=False)
    def slow(x: int) -> int:
        started.append(x)
        first.set()
        release.wait(1)
        return x

    main = threading.get_ident()

    def interrupt() -> None:
        first.wait(5)
        time.sleep(0.05)  # the caller is waiting for the first result by now
        signal.pthread_kill(main, signal.SIGINT)

    # A suite run as a background job (CI's other Pythons) inherits SIGINT as ignored, and
    # Python then installs no handler: put the default one in place for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            slow(list(range(50)))
    finally:
        release.set()
        signal.signal(signal.SIGINT, previous)
    time.sleep(0.2)  # the item in hand returns; nothing queued behind it may start
    assert started == [0]


def test_a_maps_later_chunks_start_at_the_slice_size_it_learned() -> None:
    from opero.concurrency.items import Pace, run_sync_chunk  # noqa: PLC0415

    class CountingStop(threading.Event):
        """A real stop flag that counts how often the fast path looks at it."""

        def __init__(self) -> None:
            super().__init__()
            self.looks = 0

        def is_set(self) -> bool:
            self.looks += 1
            return super().is_set()

    shell = opmap(mode="thread", progress=False)(abs).__opmap__.shell
    chunk = list(range(-2_000, 0))
    fresh, stop = Pace(), CountingStop()
    values, failed, plain = run_sync_chunk(shell, chunk, (), {}, stop, pace=fresh)
    assert (values, failed, plain) == ([-x for x in chunk], [], len(chunk))
    assert stop.looks >= 2  # a fresh pace starts at one item, then learns
    learned, stop = Pace(), CountingStop()
    learned.size = 4_096  # what a chunk of trivial items ends with
    values, _, _ = run_sync_chunk(shell, chunk, (), {}, stop, pace=learned)
    assert values == [-x for x in chunk]
    assert stop.looks == 1  # the whole chunk in one slice: the size is not learned again


@pytest.mark.parametrize("source", [list, iter])
def test_unordered_entries_of_a_whole_map_come_in_completion_order(
    source: Callable[[Iterable[int]], Iterable[int]],
) -> None:
    """f(items) with ordered=False keeps completion order (waiting once for all would not)."""
    last_done = threading.Event()

    @opmap(mode="thread", workers=2, chunk_size=4, ordered=False, progress=False)
    def first_waits(x: int) -> int:
        if x == 0:
            last_done.wait(5)  # item 0's chunk ends only after item 15 started
        if x == 15:
            time.sleep(0.2)  # chunks 1 and 2 (one worker, in turn) are long back by now
            last_done.set()
        return x

    results = first_waits(source(range(16)))
    assert sorted(results) == list(range(16))
    assert set(results[:8]) == set(range(4, 12))
