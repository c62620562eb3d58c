"""The cache layer's contracts: one meaning per marker, one read contract, the batch API.

``MISSING`` means "no cached value" and nothing else; ``NO_KEY`` means "this
call has no usable key".  Both layers read alike: ``get``/``aget`` never raise,
``peek`` (the hit path's read) may.  ``lookup_many``/``store_many`` are the
batch half a process map's parent uses.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from store_helpers import Backend

from opero import CacheKeyWarning, opero
from opero.core.cache import MISSING, NO_KEY, MemoryCache, StoreCache, make_cache
from opero.core.keys import Keys
from opero.core.single_flight import FlightTable
from opero.testing import FakeClock


def _unfreezable() -> object:
    class Local:  # a local class: no pickle, and no hash
        __hash__ = None  # type: ignore[assignment]

    return Local()


def double(x: Any, y: int = 1) -> Any:
    return x


@pytest.fixture
def layer(store_backend: Backend, clock: FakeClock) -> Any:
    """A store-backed layer (disk, sqlite, redis) for ``double``."""
    settings = store_backend.kwargs()
    return make_cache(
        double,
        backend=settings["cache_backend"],
        namespace=settings["cache_namespace"],
        backend_config=settings.get("cache_backend_config"),
    )


def test_the_markers_are_distinct_and_pickle_as_themselves() -> None:
    assert MISSING is not NO_KEY
    assert repr(MISSING) == "MISSING"
    assert repr(NO_KEY) == "NO_KEY"
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING
    assert pickle.loads(pickle.dumps(NO_KEY)) is NO_KEY


def test_a_call_that_does_not_fit_has_no_key_not_a_missing_value() -> None:
    key = Keys(double).key
    assert key((1, 2, 3), {}) is NO_KEY
    assert key((), {"z": 1}) is NO_KEY
    assert MemoryCache(double).key((1, 2, 3), {}) is NO_KEY


def test_a_custom_key_that_raises_gives_no_key(clock: FakeClock) -> None:
    def broken(func: Any, *args: Any, **kwargs: Any) -> str:
        raise RuntimeError

    with pytest.warns(CacheKeyWarning):
        assert MemoryCache(double, key=broken).key((1,), {}) is NO_KEY


def test_a_key_with_no_hashable_form_is_no_key(clock: FakeClock) -> None:
    cache = MemoryCache(double)
    key = cache.key(([_unfreezable()],), {})
    with pytest.warns(CacheKeyWarning):
        assert cache.hashable(key) is NO_KEY
    assert cache.hashable(([1, 2],)) == cache.hashable(([1, 2],))  # frozen, not NO_KEY
    assert cache.get(key) is MISSING  # the read contract: never raises


def test_store_key_of_an_unpicklable_argument_is_no_key(layer: Any) -> None:
    with pytest.warns(CacheKeyWarning):
        assert layer.key(([_unfreezable()],), {}) is NO_KEY


def test_memory_peek_may_raise_and_get_never_does(clock: FakeClock) -> None:
    cache = MemoryCache(double)
    with pytest.raises(TypeError):
        cache.peek(([1],))  # unhashable: peek says so
    cache.set(cache.hashable(([1],)), "v")
    assert cache.get(([1],)) == "v"  # get freezes and finds it
    assert cache.get(NO_KEY) is MISSING


def test_store_get_and_peek_never_raise_and_no_key_reads_no_store(layer: Any) -> None:
    reads: list[Any] = []
    real_get = layer.store.get

    def counted(key: Any) -> Any:
        reads.append(key)
        return real_get(key)

    layer.store.get = counted
    try:
        assert layer.get(NO_KEY) is MISSING
        assert layer.peek(NO_KEY) is MISSING
        assert reads == []  # NO_KEY never reaches the store
        key = layer.key((5,), {})
        assert layer.peek(key) is MISSING
        assert reads == [key]
    finally:
        layer.store.get = real_get


def test_store_aget_of_no_key_is_missing(layer: Any) -> None:
    assert asyncio.run(layer.aget(NO_KEY)) is MISSING


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_lookup_many_and_store_many(kind: str, layer: Any, clock: FakeClock) -> None:
    cache: MemoryCache | StoreCache = MemoryCache(double) if kind == "memory" else layer
    keys = [cache.key((x,), {}) for x in (1, [2], 3)]
    assert cache.lookup_many(keys) == [MISSING, MISSING, MISSING]
    stored = cache.store_many([(keys[0], None), (keys[1], "two"), (NO_KEY, "never")])
    assert stored == 2  # the NO_KEY pair is skipped
    assert cache.lookup_many([*keys, NO_KEY]) == [None, "two", MISSING, MISSING]


def test_lookup_many_never_raises_on_a_failing_memory_backend(clock: FakeClock) -> None:
    cache = MemoryCache(double)

    def failing(key: Any) -> Any:
        raise OSError("backend down")

    cache.peek = failing
    assert cache.lookup_many([(1,), (2,)]) == [MISSING, MISSING]
    assert cache.errors == 2  # each failed read counted, none raised


def test_flight_table_leads_follows_and_lands() -> None:
    table = FlightTable()
    leads, flight = table.join("k")
    assert leads
    again, same = table.join("k")
    assert not again
    assert same is flight
    same.followers.append(7)
    landed = table.land("k", flight, "value")
    assert landed.done.is_set()
    assert (landed.value, landed.error, landed.followers) == ("value", None, [7])
    leads, fresh = table.join("k")  # landed: the next one leads a new flight
    assert leads
    assert fresh is not flight


def test_cache_hits_and_single_flight_through_the_cache_step(clock: FakeClock) -> None:
    """The sync shell's wrapper is the step's finder: hits, misses and one flight per key."""
    calls: list[int] = []
    hits: list[None] = []
    gate = threading.Event()

    @opero(cache=True, on_cache_hit=lambda: hits.append(None))
    def slow(x: int) -> int:
        calls.append(x)
        gate.wait(5)
        return x * 2

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(3))) for _ in range(4)]
    for thread in threads:
        thread.start()
    while not calls:
        gate.wait(0.001)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == [6, 6, 6, 6]
    assert calls == [3]
    assert slow(3) == 6
    stats = slow.statistics()
    assert (stats.cache_misses, stats.cache_hits, len(hits)) == (1, 4, 4)


def test_an_async_on_cache_hit_is_awaited_for_followers_too(clock: FakeClock) -> None:
    announced: list[str] = []

    async def on_hit() -> None:
        await asyncio.sleep(0)
        announced.append("hit")

    @opero(cache=True, on_cache_hit=on_hit)
    async def compute(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    async def main() -> list[int]:
        first = await asyncio.gather(*(compute(1) for _ in range(3)))
        return [*first, await compute(1)]

    assert asyncio.run(main()) == [2, 2, 2, 2]
    assert announced == ["hit"] * 3  # two followers and one later hit


def test_a_decorated_function_with_a_cache_pickles_by_value(tmp_path: Path) -> None:
    @opero(cache=True)
    def cached(x: int) -> int:
        return x * 3

    assert cached(2) == 6
    copy = pickle.loads(cloudpickle.dumps(cached))
    assert copy(2) == 6
    assert copy.statistics().cache_misses == 1  # a fresh state, its own cache
    assert copy(2) == 6
    assert copy.statistics().cache_hits == 1
