"""@opero(cache=True): hits, keys, TTL, namespaces, failures, single-flight."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from opero import AllFailedError, ConfigurationError, clear_cache, opero
from opero.testing import FakeClock


class Counter:
    def __init__(self, func: Callable[..., Any] = lambda *a, **k: (a, k)) -> None:
        self.calls = 0
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.func(*args, **kwargs)


def test_second_call_is_a_hit(clock: FakeClock) -> None:
    calls = 0

    @opero(cache=True)
    def square(x: int) -> int:
        nonlocal calls
        calls += 1
        return x * x

    assert square(4) == 16
    assert square(4) == 16
    assert square(5) == 25
    assert calls == 2
    stats = square.statistics()
    assert (stats.calls, stats.cache_hits, stats.cache_misses, stats.attempts) == (3, 1, 2, 2)


def test_cache_is_off_by_default(clock: FakeClock) -> None:
    calls = 0

    @opero()
    def f() -> int:
        nonlocal calls
        calls += 1
        return 1

    f()
    f()
    assert calls == 2


def test_none_is_cached(clock: FakeClock) -> None:
    calls = 0

    @opero(cache=True)
    def lookup(key: str) -> None:
        nonlocal calls
        calls += 1

    assert lookup("a") is None
    assert lookup("a") is None
    assert calls == 1


def test_exceptions_are_never_cached(clock: FakeClock) -> None:
    outcomes: list[Any] = [ConnectionError("down"), ConnectionError("down"), "fine"]

    @opero(cache=True, retries=0)
    def fetch(x: int) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    with pytest.raises(AllFailedError):
        fetch(1)
    with pytest.raises(AllFailedError):
        fetch(1)
    assert fetch(1) == "fine"
    assert fetch(1) == "fine"
    assert outcomes == []


def test_positional_keyword_and_default_forms_share_an_entry(clock: FakeClock) -> None:
    counter = Counter(lambda a, b=2: a + b)

    @opero(cache=True)
    def add(a: int, b: int = 2) -> int:
        return counter(a, b)

    assert add(1) == 3
    assert add(1, 2) == 3
    assert add(a=1) == 3
    assert add(1, b=2) == 3
    assert add(b=2, a=1) == 3
    assert counter.calls == 1
    assert add(1, 3) == 4
    assert counter.calls == 2


def test_general_signatures_bind_too(clock: FakeClock) -> None:
    counter = Counter()

    @opero(cache=True)
    def f(a: int, *rest: int, flag: bool = False, **extra: int) -> Any:
        return counter(a, *rest, flag=flag, **extra)

    f(1, 2, z=3)
    f(1, 2, z=3, flag=False)
    assert counter.calls == 1
    f(1, 2, z=4)
    assert counter.calls == 2


def test_unhashable_arguments_work_and_dict_order_does_not_matter(clock: FakeClock) -> None:
    counter = Counter(lambda d, items: len(d) + len(items))

    @opero(cache=True)
    def size(d: dict[str, Any], items: list[Any]) -> int:
        return counter(d, items)

    assert size({"a": 1, "b": [1, 2]}, [1, {"x": {2, 3}}]) == 4
    assert size({"b": [1, 2], "a": 1}, [1, {"x": {3, 2}}]) == 4
    assert counter.calls == 1
    assert size({"a": 1, "b": [1, 3]}, [1, {"x": {2, 3}}]) == 4
    assert counter.calls == 2


def test_list_and_tuple_arguments_are_different_keys(clock: FakeClock) -> None:
    counter = Counter(lambda v: type(v).__name__)

    @opero(cache=True)
    def kind(v: Any) -> str:
        return str(counter(v))

    assert kind([1, 2]) == "list"
    assert kind((1, 2)) == "tuple"
    assert counter.calls == 2


def test_unhashable_unpicklable_argument_calls_through_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Opaque:
        __hash__ = None  # type: ignore[assignment]

        def __reduce__(self) -> Any:
            raise TypeError("no pickling")

    counter = Counter(lambda o: "done")

    @opero(cache=True)
    def use(o: Opaque) -> str:
        return str(counter(o))

    with caplog.at_level(logging.WARNING, logger="opero"):
        for _ in range(3):
            assert use(Opaque()) == "done"
    assert counter.calls == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cache" in warnings[0].getMessage()


def test_ttl_expires_on_the_fake_clock(clock: FakeClock) -> None:
    counter = Counter(lambda x: x)
    f = opero(cache=True, cache_ttl=60)(counter)
    f(1)
    clock.advance(59.9)
    f(1)
    assert counter.calls == 1
    clock.advance(0.1)
    f(1)
    assert counter.calls == 2
    clock.advance(59)
    f(1)
    assert counter.calls == 2


def test_no_ttl_never_expires(clock: FakeClock) -> None:
    counter = Counter(lambda x: x)
    f = opero(cache=True)(counter)
    f(1)
    clock.advance(10**9)
    f(1)
    assert counter.calls == 1


def test_maxsize_evicts_least_recently_used(clock: FakeClock) -> None:
    counter = Counter(lambda x: x)
    f = opero(cache=True, cache_maxsize=2)(counter)
    f(1)
    f(2)
    f(1)  # 1 is now most recent
    f(3)  # evicts 2
    assert counter.calls == 3
    f(1)
    assert counter.calls == 3
    f(2)
    assert counter.calls == 4


def test_cache_clear_and_clear_cache_by_namespace(clock: FakeClock) -> None:
    a_calls, b_calls = Counter(lambda x: x), Counter(lambda x: x)
    a = opero(cache=True, cache_namespace="ns-a")(a_calls)
    b = opero(cache=True, cache_namespace="ns-b")(b_calls)
    a(1)
    b(1)
    clear_cache(namespace="ns-a")
    a(1)
    b(1)
    assert (a_calls.calls, b_calls.calls) == (2, 1)
    clear_cache()
    a(1)
    b(1)
    assert (a_calls.calls, b_calls.calls) == (3, 2)
    b.cache_clear()
    b(1)
    a(1)
    assert (a_calls.calls, b_calls.calls) == (3, 3)


def test_cache_clear_exists_without_cache() -> None:
    f = opero()(lambda: 1)
    f.cache_clear()  # harmless
    assert f() == 1


def test_custom_cache_key_is_called_with_func_and_arguments(clock: FakeClock) -> None:
    seen: list[tuple[Any, ...]] = []
    counter = Counter(lambda data, timestamp=None: data["value"])

    def key(func: Callable[..., Any], data: dict[str, Any], timestamp: float | None = None) -> str:
        seen.append((func.__name__, data["id"], timestamp))
        return f"{func.__name__}:{data['id']}"

    @opero(cache=True, cache_key=key)
    def process(data: dict[str, Any], timestamp: float | None = None) -> Any:
        return counter(data, timestamp)

    assert process({"id": "1", "value": "v"}, timestamp=1000) == "v"
    assert process({"id": "1", "value": "other"}, timestamp=2000) == "v"  # timestamp ignored
    assert counter.calls == 1
    assert seen == [("process", "1", 1000), ("process", "1", 2000)]


def test_failing_cache_key_calls_through_and_warns_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter(lambda x: x)

    def bad_key(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        return str(kwargs["missing"])

    f = opero(cache=True, cache_key=bad_key)(counter)
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert [f(1), f(1), f(1)] == [1, 1, 1]
    assert counter.calls == 3
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert f.statistics().cache_errors == 3


def test_wrong_arguments_raise_the_functions_own_type_error(clock: FakeClock) -> None:
    @opero(cache=True)
    def f(a: int) -> int:
        return a

    with pytest.raises(TypeError):
        f(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        f(b=1)  # type: ignore[call-arg]


def test_single_flight_under_16_threads(clock: FakeClock) -> None:
    started = threading.Event()
    release = threading.Event()
    calls = 0

    @opero(cache=True)
    def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        started.set()
        assert release.wait(5)
        return x * 10

    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        value = slow(3)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    assert started.wait(5)
    release.set()
    for t in threads:
        t.join(5)
    assert results == [30] * 16
    assert calls == 1
    stats = slow.statistics()
    assert (stats.calls, stats.cache_misses, stats.cache_hits) == (16, 1, 15)


def test_single_flight_shares_the_leaders_error(clock: FakeClock) -> None:
    release = threading.Event()
    calls = 0

    @opero(cache=True, retries=0)
    def broken(x: int) -> int:
        nonlocal calls
        calls += 1
        assert release.wait(5)
        raise ValueError("boom")

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            broken(1)
        except AllFailedError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    assert len(errors) == 8
    assert calls <= 8
    assert calls >= 1
    # and nothing was cached: the next call runs again
    before = calls
    with pytest.raises(AllFailedError):
        broken(1)
    assert calls == before + 1


@pytest.mark.asyncio
async def test_single_flight_under_gather(clock: FakeClock) -> None:
    calls = 0

    @opero(cache=True)
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        for _ in range(3):
            await asyncio.sleep(0)
        return x + 1

    results = await asyncio.gather(*(fetch(1) for _ in range(16)))
    assert results == [2] * 16
    assert calls == 1
    assert await fetch(1) == 2
    assert calls == 1
    assert fetch.statistics().cache_hits == 16


@pytest.mark.asyncio
async def test_cancelled_leader_hands_over_to_a_waiter(clock: FakeClock) -> None:
    calls = 0
    gate = asyncio.Event()

    @opero(cache=True)
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return x

    leader = asyncio.ensure_future(fetch(1))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(fetch(1))
    await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await follower == 1
    assert calls == 2
    with pytest.raises(asyncio.CancelledError):
        await leader


@pytest.mark.asyncio
async def test_async_cache_hits_and_ttl(clock: FakeClock) -> None:
    calls = 0
    hits = 0

    def on_hit() -> None:
        nonlocal hits
        hits += 1

    @opero(cache=True, cache_ttl=5, on_cache_hit=on_hit)
    async def fetch(x: int) -> None:
        nonlocal calls
        calls += 1

    assert await fetch(1) is None
    assert await fetch(1) is None
    clock.advance(5)
    await fetch(1)
    assert (calls, hits) == (2, 1)


def test_cache_hit_skips_retries_and_calls(clock: FakeClock) -> None:
    calls = 0

    @opero(cache=True, retries=2)
    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first")
        return x

    assert flaky(2) == 2
    assert flaky(2) == 2
    assert calls == 2
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"cache_backend": "nosql"}, "cache_backend"),
        ({"cache_backend": "disk", "cache_backend_config": {"dir": "x"}}, "directory"),
        ({"cache_backend": "redis", "cache_backend_config": {"hots": "x"}}, "host"),
        ({"cache_backend": "sqlite", "cache_serializer": "yaml"}, "cache_serializer"),
        ({"cache_secret": "s"}, "cache_secret"),
        ({"cache_ttl": 0}, "cache_ttl"),
        ({"cache_ttl": -1}, "cache_ttl"),
        ({"cache_ttl": "60"}, "cache_ttl"),
        ({"cache_maxsize": 0}, "cache_maxsize"),
        ({"cache_namespace": ""}, "cache_namespace"),
        ({"cache_key": "not callable"}, "cache_key"),
        ({"cache_backend_config": ["x"]}, "cache_backend_config"),
    ],
)
def test_bad_cache_settings_fail_at_decoration(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        opero(cache=True, **kwargs)(lambda: None)
    assert needle in str(info.value)


def test_cache_must_be_bool() -> None:
    with pytest.raises(ConfigurationError, match="cache must be True or False"):
        opero(cache="yes")  # type: ignore[arg-type]


def test_failed_computation_counts_as_a_miss(clock: FakeClock) -> None:
    @opero(cache=True, retries=0)
    def broken(x: int) -> int:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(AllFailedError):
            broken(1)
    stats = broken.statistics()
    assert (stats.calls, stats.cache_misses, stats.cache_hits, stats.failures) == (2, 2, 0, 2)


@pytest.mark.parametrize(("backend", "module"), [("redis", "redis"), ("disk", "diskcache")])
def test_missing_optional_package_names_the_extra(backend: str, module: str) -> None:
    # A real interpreter in which the package cannot be imported.
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from opero import opero, ConfigurationError\n"
        "try:\n"
        f"    opero(cache=True, cache_backend={backend!r})(lambda: 1)\n"
        "except ConfigurationError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f'pip install "opero[{backend}]"' in out.stdout
