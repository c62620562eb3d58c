"""Cache policy units: key building, freezing, the memory backend."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opero.core.backends.memory import MISSING, MemoryBackend
from opero.core.cache import freeze, key_function
from opero.core.sentinels import NO_KEY
from opero.testing import FakeClock

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_like)
def test_freeze_is_equal_for_equal_values(value: Any) -> None:
    twin = copy.deepcopy(value)
    assert freeze(value) == freeze(twin)
    assert hash(freeze(value)) == hash(freeze(twin))


@given(st.dictionaries(st.text(max_size=4), st.integers(), min_size=2, max_size=6))
def test_freeze_ignores_dict_insertion_order(d: dict[str, int]) -> None:
    reordered = dict(reversed(list(d.items())))
    assert freeze(d) == freeze(reordered)


@given(json_like, json_like)
def test_freeze_separates_unequal_values(a: Any, b: Any) -> None:
    # Equality is Python's own (True == 1, as for dict keys): unequal values never share a key.
    if a != b:
        assert freeze(a) != freeze(b)


def test_freeze_keeps_container_kinds_apart() -> None:
    assert freeze([1, 2]) != freeze((1, 2))
    assert freeze({1, 2}) != freeze([1, 2])
    assert freeze({"a": 1}) != freeze([("a", 1)])


def test_freeze_unhashable_unpicklable_raises_type_error() -> None:
    class Opaque:
        __hash__ = None  # type: ignore[assignment]

        def __reduce__(self) -> Any:
            raise TypeError("no")

    with pytest.raises(TypeError, match="cannot build a cache key"):
        freeze(Opaque())


def test_key_function_fast_path_returns_args_itself() -> None:
    def f(a: int, b: int) -> None: ...

    key = key_function(f)
    args = (1, 2)
    assert key(args, {}) is args


def test_key_function_binds_keywords_and_defaults() -> None:
    def f(a: int, b: int = 5, c: str = "x") -> None: ...

    key = key_function(f)
    expected = key((1, 5, "x"), {})
    assert key((1,), {}) == expected
    assert key((), {"a": 1}) == expected
    assert key((1,), {"c": "x", "b": 5}) == expected
    assert key((1, 6), {}) != expected


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2, 3, 4), {}), ((), {}), ((1,), {"a": 1}), ((1,), {"zz": 1})],
)
def test_key_function_gives_no_key_for_calls_that_do_not_fit(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    def f(a: int, b: int = 5, c: str = "x") -> None: ...

    assert key_function(f)(args, kwargs) is NO_KEY


def test_key_function_general_signature() -> None:
    def f(a: int, /, b: int = 2, *rest: int, k: int = 0, **extra: int) -> None: ...

    key = key_function(f)
    assert key((1,), {}) == key((1, 2), {"k": 0})
    assert key((1, 2, 3), {"z": 1}) != key((1, 2, 3), {"z": 2})
    assert key((), {}) is NO_KEY


def test_memory_backend_lru_ttl_and_clear() -> None:
    with FakeClock() as clock:
        store = MemoryBackend(maxsize=2, ttl=10)
        store.set("a", 1)
        store.set("b", None)
        assert store.get("b") is None  # None is a value, not a miss
        assert store.get("a") == 1
        store.set("c", 3)  # evicts b, the least recently used
        assert store.get("b") is MISSING
        assert store.size() == 2
        clock.advance(10)
        assert store.get("a") is MISSING
        store.set("d", 4)
        store.clear()
        assert store.size() == 0


def test_memory_backend_concurrent_writers_respect_maxsize() -> None:
    store = MemoryBackend(maxsize=50)

    def writer(offset: int) -> None:
        for i in range(500):
            store.set((offset, i), i)
            store.get((offset, i - 1))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.size() == 50
