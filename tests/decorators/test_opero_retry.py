"""@opero retry behaviour, sync and async: attempts, errors, retry_on, shells."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from opero import AllFailedError, OperoError, opero
from opero.testing import FakeClock


class Flaky:
    """Fails ``failures`` times with the given errors, then returns ``value``."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError, value: str = "ok"):
        self.failures = failures
        self.error = error
        self.value = value
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return self.value


def test_success_first_time_makes_one_call(clock: FakeClock) -> None:
    flaky = Flaky(0)
    wrapped = opero(retries=3)(flaky)
    assert wrapped() == "ok"
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_retries_until_success_with_backoff(clock: FakeClock) -> None:
    flaky = Flaky(2)
    wrapped = opero(retries=3, min_delay=0.5, backoff_factor=2)(flaky)
    assert wrapped() == "ok"
    assert flaky.calls == 3
    assert clock.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_retries_n_means_n_plus_one_attempts(clock: FakeClock, retries: int) -> None:
    flaky = Flaky(100)
    wrapped = opero(retries=retries)(flaky)
    with pytest.raises(AllFailedError) as info:
        wrapped()
    assert flaky.calls == retries + 1
    assert info.value.attempt_count == retries + 1
    assert len(info.value.errors) == retries + 1


def test_all_failed_error_lists_errors_in_order_with_cause(clock: FakeClock) -> None:
    flaky = Flaky(100)
    wrapped = opero(retries=2)(flaky)
    with pytest.raises(AllFailedError) as info:
        wrapped()
    error = info.value
    assert [str(e) for e in error.errors] == ["failure 1", "failure 2", "failure 3"]
    assert all(type(e) is ConnectionError for e in error.errors)
    assert error.__cause__ is error.errors[-1]
    assert isinstance(error, OperoError)
    assert isinstance(error, RuntimeError)
    text = str(error)
    assert "All 3 attempts failed" in text
    assert "1. ConnectionError: failure 1" in text
    assert "3. ConnectionError: failure 3" in text


def test_str_summarises_only_first_three_errors(clock: FakeClock) -> None:
    wrapped = opero(retries=5)(Flaky(100))
    with pytest.raises(AllFailedError) as info:
        wrapped()
    text = str(info.value)
    assert "4. " not in text
    assert "... and 3 more errors" in text


def test_error_not_in_retry_on_propagates_unwrapped_after_one_call(clock: FakeClock) -> None:
    flaky = Flaky(100, error=KeyError)
    wrapped = opero(retries=3, retry_on=(ConnectionError, TimeoutError))(flaky)
    with pytest.raises(KeyError):
        wrapped()
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_non_retryable_error_after_retryable_ones_propagates_unwrapped(clock: FakeClock) -> None:
    errors = iter([ConnectionError("net"), ValueError("bad data")])

    @opero(retries=3, retry_on=ConnectionError)
    def call() -> None:
        raise next(errors)

    with pytest.raises(ValueError, match="bad data"):
        call()


def test_retry_on_single_class_and_subclasses(clock: FakeClock) -> None:
    flaky = Flaky(1, error=ConnectionRefusedError)  # subclass of ConnectionError
    wrapped = opero(retries=1, retry_on=ConnectionError)(flaky)
    assert wrapped() == "ok"
    assert flaky.calls == 2


def test_arguments_are_passed_through(clock: FakeClock) -> None:
    @opero(retries=1)
    def add(a: int, b: int = 10, *rest: int, scale: int = 1, **extra: int) -> int:
        return (a + b + sum(rest) + sum(extra.values())) * scale

    assert add(1) == 11
    assert add(1, 2, 3, 4, scale=2, z=5) == 30


def test_bare_decorator_uses_defaults(clock: FakeClock) -> None:
    flaky = Flaky(3)

    @opero
    def call() -> str:
        return flaky()

    assert call() == "ok"
    assert flaky.calls == 4  # default retries=3
    assert clock.sleeps == [0.1, 0.15000000000000002, 0.225]


def test_wraps_metadata() -> None:
    def original(x: int, y: str = "a") -> str:
        """Docstring."""
        return y * x

    wrapped = opero(retries=1)(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docstring."
    assert wrapped.__qualname__ == original.__qualname__
    assert wrapped.__module__ == original.__module__
    assert wrapped.__wrapped__ is original
    assert inspect.signature(wrapped) == inspect.signature(original)


def test_decorating_twice_gives_independent_functions(clock: FakeClock) -> None:
    def original() -> int:
        return 1

    first, second = opero(cache=True)(original), opero(cache=True)(original)
    first()
    assert first.statistics().calls == 1
    assert second.statistics().calls == 0


def test_methods_can_be_decorated(clock: FakeClock) -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @opero(retries=2)
        def get(self, path: str) -> str:
            self.calls += 1
            if self.calls < 2:
                raise ConnectionError("reset")
            return f"GET {path}"

    client = Client()
    assert client.get("/x") == "GET /x"
    assert client.calls == 2


def test_sync_function_works_inside_running_loop(clock: FakeClock) -> None:
    flaky = Flaky(2)
    wrapped = opero(retries=3)(flaky)

    async def handler() -> str:
        return wrapped()  # a sync call from inside a running loop (FastAPI, Jupyter)

    assert asyncio.run(handler()) == "ok"
    assert flaky.calls == 3
    assert not inspect.iscoroutinefunction(wrapped)


def test_async_function_stays_a_coroutine_function(clock: FakeClock) -> None:
    async def fetch() -> int:
        return 1

    wrapped = opero(retries=2)(fetch)
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.run(wrapped()) == 1


@pytest.mark.asyncio
async def test_async_retries_and_errors(clock: FakeClock) -> None:
    calls = 0

    @opero(retries=2, min_delay=1, backoff_factor=3)
    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise TimeoutError(f"slow {calls}")

    with pytest.raises(AllFailedError) as info:
        await fetch()
    assert calls == 3
    assert [str(e) for e in info.value.errors] == ["slow 1", "slow 2", "slow 3"]
    assert clock.sleeps == [1.0, 3.0]


@pytest.mark.asyncio
async def test_async_non_retryable_propagates(clock: FakeClock) -> None:
    calls = 0

    @opero(retries=3, retry_on=ConnectionError)
    async def fetch() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        await fetch()
    assert calls == 1


@pytest.mark.asyncio
async def test_async_backoff_does_not_block_the_loop() -> None:
    # Real time, short: while one call backs off, another task keeps running.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(5):
            ticks += 1
            await asyncio.sleep(0.01)

    flaky = Flaky(1)

    @opero(retries=1, min_delay=0.1)
    async def call() -> str:
        return flaky()

    result, _ = await asyncio.gather(call(), ticker())
    assert result == "ok"
    assert ticks == 5


def test_async_function_used_from_two_event_loops(clock: FakeClock) -> None:
    flaky = Flaky(1)

    @opero(retries=2)
    async def call() -> str:
        return flaky()

    assert asyncio.run(call()) == "ok"
    assert asyncio.run(call()) == "ok"
    assert flaky.calls == 3


def test_keyboard_interrupt_is_never_retried(clock: FakeClock) -> None:
    calls = 0

    @opero(retries=3)
    def call() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call()
    assert calls == 1


def test_jitter_draws_within_bound(clock: FakeClock) -> None:
    wrapped = opero(retries=20, min_delay=1, backoff_factor=2, max_delay=8, jitter=True)(Flaky(100))
    with pytest.raises(AllFailedError):
        wrapped()
    assert len(clock.sleeps) == 20
    bounds = [min(8.0, 2.0 ** (k - 1)) for k in range(1, 21)]
    assert all(0 <= s <= b for s, b in zip(clock.sleeps, bounds, strict=True))
    assert clock.sleeps != bounds  # actually randomised


def test_arguments_that_do_not_fit_raise_type_error_at_once(clock: FakeClock) -> None:
    calls = 0

    @opero(retries=3)
    def f(a: int) -> int:
        nonlocal calls
        calls += 1
        return a

    with pytest.raises(TypeError, match="positional argument"):
        f(1, 2)  # type: ignore[call-arg]
    assert calls == 0
    assert clock.sleeps == []
    assert f.statistics().failures == 1


def test_type_error_inside_the_function_is_retried(clock: FakeClock) -> None:
    calls = 0

    @opero(retries=2)
    def f(a: object) -> int:
        nonlocal calls
        calls += 1
        return len(a)  # type: ignore[arg-type]

    with pytest.raises(AllFailedError):
        f(5)
    assert calls == 3


@pytest.mark.asyncio
async def test_async_arguments_that_do_not_fit_raise_at_once(clock: FakeClock) -> None:
    @opero(retries=3)
    async def f(a: int) -> int:
        return a

    with pytest.raises(TypeError):
        await f()  # type: ignore[call-arg]
    assert clock.sleeps == []
