"""@opero(cache=True) on both shells: hits, keys, TTL, namespaces, failures, single-flight."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest

from opero import AllFailedError, CacheKeyWarning, ConfigurationError, clear_cache, opero
from opero.testing import FakeClock
from shells import Gate, Shell


class Counter:
    def __init__(self, func: Callable[..., Any] = lambda *a, **k: (a, k)) -> None:
        self.calls = 0
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.func(*args, **kwargs)


def test_second_call_is_a_hit(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero(cache=True)
    @shell.fn
    def square(x: int) -> int:
        nonlocal calls
        calls += 1
        return x * x

    assert shell.call(square, 4) == 16
    assert shell.call(square, 4) == 16
    assert shell.call(square, 5) == 25
    assert calls == 2
    stats = square.statistics()
    assert (stats.calls, stats.cache_hits, stats.cache_misses, stats.attempts) == (3, 1, 2, 2)


def test_cache_is_off_by_default(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero()
    @shell.fn
    def f() -> int:
        nonlocal calls
        calls += 1
        return 1

    shell.call(f)
    shell.call(f)
    assert calls == 2


def test_none_is_cached(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero(cache=True)
    @shell.fn
    def lookup(key: str) -> None:
        nonlocal calls
        calls += 1

    assert shell.call(lookup, "a") is None
    assert shell.call(lookup, "a") is None
    assert calls == 1


def test_exceptions_are_never_cached(clock: FakeClock, shell: Shell) -> None:
    outcomes: list[Any] = [ConnectionError("down"), ConnectionError("down"), "fine"]

    @opero(cache=True, retries=0)
    @shell.fn
    def fetch(x: int) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    with pytest.raises(AllFailedError):
        shell.call(fetch, 1)
    with pytest.raises(AllFailedError):
        shell.call(fetch, 1)
    assert shell.call(fetch, 1) == "fine"
    assert shell.call(fetch, 1) == "fine"
    assert outcomes == []


def test_positional_keyword_and_default_forms_share_an_entry(
    clock: FakeClock, shell: Shell
) -> None:
    counter = Counter(lambda a, b=2: a + b)

    @opero(cache=True)
    @shell.fn
    def add(a: int, b: int = 2) -> int:
        return counter(a, b)

    assert shell.call(add, 1) == 3
    assert shell.call(add, 1, 2) == 3
    assert shell.call(add, a=1) == 3
    assert shell.call(add, 1, b=2) == 3
    assert shell.call(add, b=2, a=1) == 3
    assert counter.calls == 1
    assert shell.call(add, 1, 3) == 4
    assert counter.calls == 2


def test_general_signatures_bind_too(clock: FakeClock, shell: Shell) -> None:
    counter = Counter()

    @opero(cache=True)
    @shell.fn
    def f(a: int, *rest: int, flag: bool = False, **extra: int) -> Any:
        return counter(a, *rest, flag=flag, **extra)

    shell.call(f, 1, 2, z=3)
    shell.call(f, 1, 2, z=3, flag=False)
    assert counter.calls == 1
    shell.call(f, 1, 2, z=4)
    assert counter.calls == 2


def test_unhashable_arguments_work_and_dict_order_does_not_matter(
    clock: FakeClock, shell: Shell
) -> None:
    counter = Counter(lambda d, items: len(d) + len(items))

    @opero(cache=True)
    @shell.fn
    def size(d: dict[str, Any], items: list[Any]) -> int:
        return counter(d, items)

    assert shell.call(size, {"a": 1, "b": [1, 2]}, [1, {"x": {2, 3}}]) == 4
    assert shell.call(size, {"b": [1, 2], "a": 1}, [1, {"x": {3, 2}}]) == 4
    assert counter.calls == 1
    assert shell.call(size, {"a": 1, "b": [1, 3]}, [1, {"x": {2, 3}}]) == 4
    assert counter.calls == 2


def test_list_and_tuple_arguments_are_different_keys(clock: FakeClock, shell: Shell) -> None:
    counter = Counter(lambda v: type(v).__name__)

    @opero(cache=True)
    @shell.fn
    def kind(v: Any) -> str:
        return str(counter(v))

    assert shell.call(kind, [1, 2]) == "list"
    assert shell.call(kind, (1, 2)) == "tuple"
    assert counter.calls == 2


def test_unhashable_unpicklable_argument_calls_through_with_one_warning(
    clock: FakeClock, shell: Shell, caplog: pytest.LogCaptureFixture
) -> None:
    class Opaque:
        __hash__ = None  # type: ignore[assignment]

        def __reduce__(self) -> Any:
            raise TypeError("no pickling")

    counter = Counter(lambda o: "done")

    @opero(cache=True)
    @shell.fn
    def use(o: Opaque) -> str:
        return str(counter(o))

    with (
        caplog.at_level(logging.WARNING, logger="opero"),
        pytest.warns(CacheKeyWarning, match="parameter 'o'"),
    ):
        results = [shell.call(use, Opaque()) for _ in range(3)]
    assert results == ["done"] * 3
    assert counter.calls == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cache" in warnings[0].getMessage()


def test_ttl_expires_on_the_fake_clock(clock: FakeClock, shell: Shell) -> None:
    counter = Counter(lambda x: x)
    f = opero(cache=True, cache_ttl=60)(shell.fn(counter))
    shell.call(f, 1)
    clock.advance(59.9)
    shell.call(f, 1)
    assert counter.calls == 1
    clock.advance(0.1)
    shell.call(f, 1)
    assert counter.calls == 2
    clock.advance(59)
    shell.call(f, 1)
    assert counter.calls == 2


def test_hits_fire_on_cache_hit_and_end_at_the_ttl(clock: FakeClock, shell: Shell) -> None:
    calls = 0
    hits = 0

    def on_hit() -> None:  # a sync callback, on either shell
        nonlocal hits
        hits += 1

    @opero(cache=True, cache_ttl=5, on_cache_hit=on_hit)
    @shell.fn
    def fetch(x: int) -> None:
        nonlocal calls
        calls += 1

    assert shell.call(fetch, 1) is None
    assert shell.call(fetch, 1) is None
    clock.advance(5)
    shell.call(fetch, 1)
    assert (calls, hits) == (2, 1)


def test_no_ttl_never_expires(clock: FakeClock, shell: Shell) -> None:
    counter = Counter(lambda x: x)
    f = opero(cache=True)(shell.fn(counter))
    shell.call(f, 1)
    clock.advance(10**9)
    shell.call(f, 1)
    assert counter.calls == 1


def test_maxsize_evicts_least_recently_used(clock: FakeClock, shell: Shell) -> None:
    counter = Counter(lambda x: x)
    f = opero(cache=True, cache_maxsize=2)(shell.fn(counter))
    shell.call(f, 1)
    shell.call(f, 2)
    shell.call(f, 1)  # 1 is now most recent
    shell.call(f, 3)  # evicts 2
    assert counter.calls == 3
    shell.call(f, 1)
    assert counter.calls == 3
    shell.call(f, 2)
    assert counter.calls == 4


def test_cache_clear_and_clear_cache_by_namespace(clock: FakeClock, shell: Shell) -> None:
    a_calls, b_calls = Counter(lambda x: x), Counter(lambda x: x)
    a = opero(cache=True, cache_namespace="ns-a")(shell.fn(a_calls))
    b = opero(cache=True, cache_namespace="ns-b")(shell.fn(b_calls))
    shell.call(a, 1)
    shell.call(b, 1)
    clear_cache(namespace="ns-a")
    shell.call(a, 1)
    shell.call(b, 1)
    assert (a_calls.calls, b_calls.calls) == (2, 1)
    clear_cache()
    shell.call(a, 1)
    shell.call(b, 1)
    assert (a_calls.calls, b_calls.calls) == (3, 2)
    b.cache_clear()
    shell.call(b, 1)
    shell.call(a, 1)
    assert (a_calls.calls, b_calls.calls) == (3, 3)


def test_cache_clear_exists_without_cache(shell: Shell) -> None:
    f = opero()(shell.fn(lambda: 1))
    f.cache_clear()  # harmless
    assert shell.call(f) == 1


def test_custom_cache_key_is_called_with_func_and_arguments(clock: FakeClock, shell: Shell) -> None:
    seen: list[tuple[Any, ...]] = []
    counter = Counter(lambda data, timestamp=None: data["value"])

    def key(func: Callable[..., Any], data: dict[str, Any], timestamp: float | None = None) -> str:
        seen.append((func.__name__, data["id"], timestamp))
        return f"{func.__name__}:{data['id']}"

    @opero(cache=True, cache_key=key)
    @shell.fn
    def process(data: dict[str, Any], timestamp: float | None = None) -> Any:
        return counter(data, timestamp)

    assert shell.call(process, {"id": "1", "value": "v"}, timestamp=1000) == "v"
    # timestamp ignored by the key
    assert shell.call(process, {"id": "1", "value": "other"}, timestamp=2000) == "v"
    assert counter.calls == 1
    assert seen == [("process", "1", 1000), ("process", "1", 2000)]


def test_failing_cache_key_calls_through_and_warns_once(
    clock: FakeClock, shell: Shell, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter(lambda x: x)

    def bad_key(func: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        return str(kwargs["missing"])

    f = opero(cache=True, cache_key=bad_key)(shell.fn(counter))
    with (
        caplog.at_level(logging.WARNING, logger="opero"),
        pytest.warns(CacheKeyWarning, match="cache_key raised KeyError"),
    ):
        assert [shell.call(f, 1), shell.call(f, 1), shell.call(f, 1)] == [1, 1, 1]
    assert counter.calls == 3
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert f.statistics().cache_errors == 3


def test_wrong_arguments_raise_the_functions_own_type_error(clock: FakeClock, shell: Shell) -> None:
    @opero(cache=True)
    @shell.fn
    def f(a: int) -> int:
        return a

    with pytest.raises(TypeError):
        shell.call(f, 1, 2)
    with pytest.raises(TypeError):
        shell.call(f, b=1)


def test_single_flight_under_concurrent_calls(clock: FakeClock, shell: Shell) -> None:
    # 16 threads, or 16 tasks under asyncio.gather: the leader is held at the gate.
    release = Gate()
    calls = 0

    @opero(cache=True)
    @shell.fn
    def slow(x: int) -> Generator[Gate, None, int]:
        nonlocal calls
        calls += 1
        yield release
        return x * 10

    assert shell.concurrently(16, slow, 3, gate=release) == [30] * 16
    assert calls == 1
    stats = slow.statistics()
    assert (stats.calls, stats.cache_misses, stats.cache_hits) == (16, 1, 15)
    assert shell.call(slow, 3) == 30
    assert calls == 1
    assert slow.statistics().cache_hits == 16


def test_single_flight_shares_the_leaders_error(clock: FakeClock, shell: Shell) -> None:
    release = Gate()
    calls = 0

    @opero(cache=True, retries=0)
    @shell.fn
    def broken(x: int) -> Generator[Gate, None, int]:
        nonlocal calls
        calls += 1
        yield release
        raise ValueError("boom")

    outcomes = shell.concurrently(8, broken, 1, gate=release)
    assert all(isinstance(outcome, AllFailedError) for outcome in outcomes)
    assert len(outcomes) == 8
    assert calls <= 8
    assert calls >= 1
    # and nothing was cached: the next call runs again
    before = calls
    with pytest.raises(AllFailedError):
        shell.call(broken, 1)
    assert calls == before + 1


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


def test_cache_hit_skips_retries_and_calls(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero(cache=True, retries=2)
    @shell.fn
    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first")
        return x

    assert shell.call(flaky, 2) == 2
    assert shell.call(flaky, 2) == 2
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


def test_failed_computation_counts_as_a_miss(clock: FakeClock, shell: Shell) -> None:
    @opero(cache=True, retries=0)
    @shell.fn
    def broken(x: int) -> int:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(AllFailedError):
            shell.call(broken, 1)
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
