"""Every cache backend through @opero: hits, None, errors, TTL, namespaces, clearing, stats.

Disk and sqlite live in the test's ``tmp_path``; redis uses the test database
and a namespace of its own (see ``conftest.py`` and ``store_helpers.py``).
Time is the fake clock's, including the wall time stored in persistent entries.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from store_helpers import ALL_BACKENDS, Backend, make_backend, opero_warnings, store_warnings

from opero import AllFailedError, clear_cache, opero
from opero.testing import FakeClock

#: Bytes before the payload of an unsigned entry: magic (3), serializer (1), expiry (8).
HEADER_SIZE = 12


def value_of(x: int) -> dict[str, Any]:
    return {"x": x, "nested": [x, (x, None), {"deep": {x}}]}


def test_second_call_is_a_hit(any_backend: Backend, clock: FakeClock) -> None:
    runs: list[int] = []

    @opero(**any_backend.kwargs())
    def compute(x: int) -> dict[str, Any]:
        runs.append(x)
        return value_of(x)

    assert compute(1) == value_of(1)
    assert compute(1) == value_of(1)
    assert compute(x=1) == value_of(1)
    assert compute(2) == value_of(2)
    assert runs == [1, 2]
    stats = compute.statistics()
    assert (stats.calls, stats.cache_hits, stats.cache_misses, stats.cache_errors) == (4, 2, 2, 0)


def test_none_is_cached(any_backend: Backend, clock: FakeClock) -> None:
    runs = 0

    @opero(**any_backend.kwargs())
    def lookup(key: str) -> None:
        nonlocal runs
        runs += 1

    assert lookup("a") is None
    assert lookup("a") is None
    assert runs == 1
    assert lookup.statistics().cache_hits == 1


def test_exceptions_are_never_cached(any_backend: Backend, clock: FakeClock) -> None:
    outcomes: list[Any] = [ConnectionError("down"), ConnectionError("down"), "fine"]

    @opero(**any_backend.kwargs(), retries=0)
    def fetch(x: int) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    for _ in range(2):
        with pytest.raises(AllFailedError):
            fetch(1)
    assert fetch.__opero__.cache.stats()["entries"] == 0
    assert fetch(1) == "fine"
    assert fetch(1) == "fine"
    assert outcomes == []
    assert fetch.__opero__.cache.stats()["entries"] == 1


def test_ttl_expires_after_exactly_ttl_seconds(any_backend: Backend, clock: FakeClock) -> None:
    runs = 0

    @opero(**any_backend.kwargs(), cache_ttl=60)
    def f(x: int) -> int:
        nonlocal runs
        runs += 1
        return x * 10

    assert f(1) == 10
    clock.advance(59)
    assert f(1) == 10
    assert runs == 1
    clock.advance(1)
    assert f(1) == 10
    assert runs == 2
    clock.advance(59)  # the recomputed entry lives from its own write
    assert f(1) == 10
    assert runs == 2


def test_no_ttl_never_expires(any_backend: Backend, clock: FakeClock) -> None:
    runs = 0

    @opero(**any_backend.kwargs())
    def f(x: int) -> int:
        nonlocal runs
        runs += 1
        return x

    f(1)
    clock.advance(10**8)
    f(1)
    assert runs == 1


def test_namespaces_are_separate_and_cleared_separately(
    any_backend: Backend, clock: FakeClock
) -> None:
    runs = {"a": 0, "b": 0}

    def make(name: str) -> Any:
        @opero(**any_backend.kwargs(namespace=f"{any_backend.namespace}-{name}"))
        def same(x: int) -> str:  # same qualname in both: only the namespace tells them apart
            runs[name] += 1
            return f"{name}{x}"

        return same

    a, b = make("a"), make("b")
    assert (a(1), b(1)) == ("a1", "b1")
    assert (a(1), b(1)) == ("a1", "b1")
    assert runs == {"a": 1, "b": 1}
    clear_cache(namespace=f"{any_backend.namespace}-a")
    assert (a(1), b(1)) == ("a1", "b1")
    assert runs == {"a": 2, "b": 1}
    clear_cache()
    assert (a(1), b(1)) == ("a1", "b1")
    assert runs == {"a": 3, "b": 2}


def test_cache_clear_forgets_only_that_function(any_backend: Backend, clock: FakeClock) -> None:
    runs = {"f": 0, "g": 0}

    @opero(**any_backend.kwargs())
    def f(x: int) -> int:
        runs["f"] += 1
        return x

    @opero(**any_backend.kwargs())
    def g(x: int) -> int:
        runs["g"] += 1
        return -x

    assert (f(1), g(1), f(2)) == (1, -1, 2)
    f.cache_clear()
    assert (f(1), g(1), f(2)) == (1, -1, 2)
    assert runs == {"f": 4, "g": 1}


def test_stats_count_this_functions_entries(any_backend: Backend, clock: FakeClock) -> None:
    @opero(**any_backend.kwargs())
    def f(x: int) -> int:
        return x

    @opero(**any_backend.kwargs())
    def other(x: int) -> int:
        return x

    for x in (1, 2, 3, 3):
        f(x)
    other(1)
    stats = f.__opero__.cache.stats()
    assert stats["backend"] == any_backend.name
    assert stats["entries"] == 3
    if any_backend.name != "memory":
        assert stats["namespaces"] == {any_backend.namespace: 3}
    f.cache_clear()
    assert f.__opero__.cache.stats()["entries"] == 0
    assert other.__opero__.cache.stats()["entries"] == 1


def test_async_function_hits_from_a_second_event_loop(
    any_backend: Backend, clock: FakeClock
) -> None:
    runs = 0

    @opero(**any_backend.kwargs())
    async def fetch(x: int) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0)
        return value_of(x)

    assert asyncio.run(fetch(3)) == value_of(3)
    assert asyncio.run(fetch(3)) == value_of(3)  # a new loop (and, for redis, a new client)
    assert runs == 1
    stats = fetch.statistics()
    assert (stats.cache_hits, stats.cache_misses, stats.cache_errors) == (1, 1, 0)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_redis_asyncio_clients_close_with_their_loop(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    backend = make_backend("redis", request, tmp_path)

    @opero(**backend.kwargs())
    async def fetch(x: int) -> int:
        return x

    def open_descriptors() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    asyncio.run(fetch(0))  # warm up: imports and anything created once per process
    before = open_descriptors()
    for x in range(8):
        assert asyncio.run(fetch(x % 2)) == x % 2
    assert open_descriptors() - before <= 2  # not one socket left behind per loop
    assert fetch.statistics().cache_hits == 7


def test_clear_cache_reaches_every_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> None:
    namespace = request.getfixturevalue("redis_namespace")  # cleaned up afterwards
    keep, drop = f"{namespace}-keep", f"{namespace}-drop"
    runs: dict[tuple[str, str], int] = {}
    functions = []
    for name in ALL_BACKENDS:
        backend = make_backend(name, request, tmp_path)
        for space in (keep, drop):
            runs[name, space] = 0

            @opero(**backend.kwargs(namespace=space))
            def f(x: int, run: tuple[str, str] = (name, space)) -> int:
                runs[run] += 1
                return x

            functions.append(f)

    def call_all() -> None:
        for f in functions:
            assert f(1) == 1

    call_all()
    call_all()
    assert set(runs.values()) == {1}
    clear_cache(namespace=drop)
    call_all()
    assert runs == {(n, s): 2 if s == drop else 1 for n in ALL_BACKENDS for s in (keep, drop)}
    clear_cache()
    call_all()
    assert runs == {(n, s): 3 if s == drop else 2 for n in ALL_BACKENDS for s in (keep, drop)}


def test_single_flight_across_threads(store_backend: Backend, clock: FakeClock) -> None:
    started, release = threading.Event(), threading.Event()
    runs = 0

    @opero(**store_backend.kwargs())
    def slow(x: int) -> int:
        nonlocal runs
        runs += 1
        started.set()
        assert release.wait(5)
        return x * 10

    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        value = slow(3)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    assert started.wait(5)
    threading.Event().wait(0.1)  # let the other threads queue up behind the leader
    release.set()
    for t in threads:
        t.join(5)
    assert results == [30] * 8
    assert runs == 1
    stats = slow.statistics()
    assert (stats.calls, stats.cache_misses, stats.cache_hits) == (8, 1, 7)


def test_json_serializer_stores_readable_json(store_backend: Backend, clock: FakeClock) -> None:
    result = {"name": "é", "items": [1, 2.5, None, True], "map": {"k": "v"}}

    @opero(**store_backend.kwargs(cache_serializer="json"))
    def f(x: int) -> dict[str, Any]:
        return result

    assert f(7) == result
    key = f.__opero__.cache.key((7,), {})
    assert store_backend.raw_keys() == [key]
    raw = store_backend.raw_get(key)
    assert raw is not None
    assert raw[:4] == b"OP1j"
    assert json.loads(raw[HEADER_SIZE:].decode("utf-8")) == result
    assert f(7) == result
    assert f.statistics().cache_hits == 1


def test_json_serializer_calls_through_values_it_cannot_store(
    store_backend: Backend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0

    @opero(**store_backend.private().kwargs(cache_serializer="json"))
    def f(x: int) -> set[int]:
        nonlocal runs
        runs += 1
        return {x}

    with caplog.at_level(logging.WARNING, logger="opero"):
        assert [f(1), f(1), f(1)] == [{1}, {1}, {1}]
    assert runs == 3
    assert store_backend.raw_keys() == []
    assert len(opero_warnings(caplog)) == 1
    assert f.statistics().cache_errors == 3


def test_entry_of_another_secret_is_a_miss(
    store_backend: Backend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = store_backend.private()
    runs = 0

    def lookup(x: int) -> str:
        nonlocal runs
        runs += 1
        return f"value {x}"

    with_a = opero(**backend.kwargs(cache_secret="secret A"))(lookup)
    with_b = opero(**backend.kwargs(cache_secret=b"secret B"))(lookup)
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert with_a(1) == "value 1"
        assert with_a(1) == "value 1"
        assert runs == 1
        assert with_b(1) == "value 1"  # signed with A: not trusted, recomputed and rewritten
        assert runs == 2
        assert with_b(1) == "value 1"
        assert runs == 2
        assert with_a(1) == "value 1"  # now B's entry: a miss for A
        assert runs == 3
    warnings = store_warnings(caplog, with_b)
    assert len(warnings) == 1
    assert "signature" in warnings[0].getMessage()
    assert len(opero_warnings(caplog)) == 1
    # Counted (a miss reads the entry twice: the lookup and single-flight's second look).
    assert with_b.statistics().cache_errors >= 1
    assert with_a.statistics().cache_errors >= 1


def test_unsigned_entry_is_a_miss_for_a_function_with_a_secret(
    store_backend: Backend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = store_backend.private()
    runs = 0

    def lookup(x: int) -> str:
        nonlocal runs
        runs += 1
        return f"value {x}"

    plain = opero(**backend.kwargs())(lookup)
    signed = opero(**backend.kwargs(cache_secret="s3cret"))(lookup)
    with caplog.at_level(logging.WARNING, logger="opero"):
        plain(1)
        signed(1)
        signed(1)
    assert runs == 2
    warnings = store_warnings(caplog, signed)
    assert len(warnings) == 1
    assert "signature" in warnings[0].getMessage()
