"""@opero retry on both shells: attempts, errors, retry_on, metadata; a backoff frees the loop."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Generator

import pytest

from opero import AllFailedError, OperoError, opero
from opero.testing import FakeClock, use_clock
from shells import Shell


class Flaky:
    """Fails ``failures`` times with the given errors, then returns ``value``."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError, value: str = "ok"):
        self.failures = failures
        self.error = error
        self.value = value
        self.calls = 0
        #: ``time.monotonic()`` at the start of each call.
        self.started: list[float] = []

    def __call__(self, *args: object, **kwargs: object) -> str:
        self.calls += 1
        self.started.append(time.monotonic())
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return self.value


def test_success_first_time_makes_one_call(clock: FakeClock, shell: Shell) -> None:
    flaky = Flaky(0)
    wrapped = opero(retries=3)(shell.fn(flaky))
    assert shell.call(wrapped) == "ok"
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_retries_until_success_with_backoff(clock: FakeClock, shell: Shell) -> None:
    flaky = Flaky(2)
    wrapped = opero(retries=3, min_delay=0.5, backoff_factor=2)(shell.fn(flaky))
    assert shell.call(wrapped) == "ok"
    assert flaky.calls == 3
    assert clock.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_retries_n_means_n_plus_one_attempts(clock: FakeClock, shell: Shell, retries: int) -> None:
    flaky = Flaky(100)
    wrapped = opero(retries=retries)(shell.fn(flaky))
    with pytest.raises(AllFailedError) as info:
        shell.call(wrapped)
    assert flaky.calls == retries + 1
    assert info.value.attempt_count == retries + 1
    assert len(info.value.errors) == retries + 1


def test_all_failed_error_lists_errors_in_order_with_cause(clock: FakeClock, shell: Shell) -> None:
    flaky = Flaky(100)
    wrapped = opero(retries=2)(shell.fn(flaky))
    with pytest.raises(AllFailedError) as info:
        shell.call(wrapped)
    error = info.value
    assert [str(e) for e in error.errors] == ["failure 1", "failure 2", "failure 3"]
    assert all(type(e) is ConnectionError for e in error.errors)
    assert error.__cause__ is error.errors[-1]
    assert isinstance(error, OperoError)
    assert isinstance(error, RuntimeError)
    text = str(error)
    assert text.startswith("3 calls of test_opero_retry.Flaky failed: 3 attempts\n")
    assert "1. ConnectionError: failure 1" in text
    assert "3. ConnectionError: failure 3" in text


def test_gives_up_after_the_backoff_schedule(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero(retries=2, min_delay=1, backoff_factor=3)
    @shell.fn
    def fetch() -> Generator[None, None, int]:
        nonlocal calls
        calls += 1
        yield
        raise TimeoutError(f"slow {calls}")

    with pytest.raises(AllFailedError) as info:
        shell.call(fetch)
    assert calls == 3
    assert [str(e) for e in info.value.errors] == ["slow 1", "slow 2", "slow 3"]
    assert all(type(e) is TimeoutError for e in info.value.errors)
    assert clock.sleeps == [1.0, 3.0]


def test_str_summarises_only_first_three_errors(clock: FakeClock, shell: Shell) -> None:
    wrapped = opero(retries=5)(shell.fn(Flaky(100)))
    with pytest.raises(AllFailedError) as info:
        shell.call(wrapped)
    text = str(info.value)
    assert "4. " not in text
    assert "... and 3 more errors" in text


def test_error_not_in_retry_on_propagates_unwrapped_after_one_call(
    clock: FakeClock, shell: Shell
) -> None:
    flaky = Flaky(100, error=KeyError)
    wrapped = opero(retries=3, retry_on=(ConnectionError, TimeoutError))(shell.fn(flaky))
    with pytest.raises(KeyError):
        shell.call(wrapped)
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_non_retryable_error_after_retryable_ones_propagates_unwrapped(
    clock: FakeClock, shell: Shell
) -> None:
    errors = iter([ConnectionError("net"), ValueError("bad data")])

    @opero(retries=3, retry_on=ConnectionError)
    @shell.fn
    def call() -> None:
        raise next(errors)

    with pytest.raises(ValueError, match="bad data"):
        shell.call(call)


def test_retry_on_single_class_and_subclasses(clock: FakeClock, shell: Shell) -> None:
    flaky = Flaky(1, error=ConnectionRefusedError)  # subclass of ConnectionError
    wrapped = opero(retries=1, retry_on=ConnectionError)(shell.fn(flaky))
    assert shell.call(wrapped) == "ok"
    assert flaky.calls == 2


def test_arguments_are_passed_through(clock: FakeClock, shell: Shell) -> None:
    @opero(retries=1)
    @shell.fn
    def add(a: int, b: int = 10, *rest: int, scale: int = 1, **extra: int) -> int:
        return (a + b + sum(rest) + sum(extra.values())) * scale

    assert shell.call(add, 1) == 11
    assert shell.call(add, 1, 2, 3, 4, scale=2, z=5) == 30


def test_bare_decorator_uses_defaults(clock: FakeClock, shell: Shell) -> None:
    flaky = Flaky(3)

    @opero
    @shell.fn
    def call() -> str:
        return flaky()

    assert shell.call(call) == "ok"
    assert flaky.calls == 4  # default retries=3
    assert clock.sleeps == [0.1, 0.15000000000000002, 0.225]


def test_wraps_metadata(clock: FakeClock, shell: Shell) -> None:
    def body(x: int, y: str = "a") -> str:
        """Docstring."""
        return y * x

    original = shell.fn(body)
    wrapped = opero(retries=1)(original)
    assert wrapped.__name__ == "body"
    assert wrapped.__doc__ == "Docstring."
    assert wrapped.__qualname__ == original.__qualname__ == body.__qualname__
    assert wrapped.__module__ == original.__module__ == __name__
    assert wrapped.__wrapped__ is original
    assert inspect.signature(wrapped) == inspect.signature(original) == inspect.signature(body)
    # A coroutine function stays one; a sync function does not become one.
    assert inspect.iscoroutinefunction(wrapped) is shell.is_async
    assert shell.call(wrapped, 2) == "aa"


def test_decorating_twice_gives_independent_functions(clock: FakeClock, shell: Shell) -> None:
    def body() -> int:
        return 1

    original = shell.fn(body)
    first, second = opero(cache=True)(original), opero(cache=True)(original)
    shell.call(first)
    assert first.statistics().calls == 1
    assert second.statistics().calls == 0


def test_methods_can_be_decorated(clock: FakeClock, shell: Shell) -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @opero(retries=2)
        @shell.fn
        def get(self, path: str) -> str:
            self.calls += 1
            if self.calls < 2:
                raise ConnectionError("reset")
            return f"GET {path}"

    client = Client()
    assert shell.call(client.get, "/x") == "GET /x"
    assert client.calls == 2


def test_sync_function_works_inside_running_loop(clock: FakeClock) -> None:
    flaky = Flaky(2)
    wrapped = opero(retries=3)(flaky)

    async def handler() -> str:
        return wrapped()  # a sync call from inside a running loop (FastAPI, Jupyter)

    assert asyncio.run(handler()) == "ok"
    assert flaky.calls == 3
    assert not inspect.iscoroutinefunction(wrapped)


def test_async_function_used_from_two_event_loops(clock: FakeClock) -> None:
    flaky = Flaky(1)

    @opero(retries=2)
    async def call() -> str:
        return flaky()

    assert asyncio.run(call()) == "ok"
    assert asyncio.run(call()) == "ok"
    assert flaky.calls == 3


def test_keyboard_interrupt_is_never_retried(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero(retries=3)
    @shell.fn
    def call() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shell.call(call)
    assert calls == 1


def test_jitter_draws_within_bound(clock: FakeClock, shell: Shell) -> None:
    wrapped = opero(retries=20, min_delay=1, backoff_factor=2, max_delay=8, jitter=True)(
        shell.fn(Flaky(100))
    )
    with pytest.raises(AllFailedError):
        shell.call(wrapped)
    assert len(clock.sleeps) == 20
    bounds = [min(8.0, 2.0 ** (k - 1)) for k in range(1, 21)]
    assert all(0 <= s <= b for s, b in zip(clock.sleeps, bounds, strict=True))
    assert clock.sleeps != bounds  # actually randomised


def test_arguments_that_do_not_fit_raise_type_error_at_once(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero(retries=3)
    @shell.fn
    def f(a: int) -> int:
        nonlocal calls
        calls += 1
        return a

    with pytest.raises(TypeError, match="positional argument"):
        shell.call(f, 1, 2)
    with pytest.raises(TypeError, match="missing"):
        shell.call(f)
    assert calls == 0
    assert clock.sleeps == []
    assert f.statistics().failures == 2


def test_type_error_inside_the_function_is_retried(clock: FakeClock, shell: Shell) -> None:
    calls = 0

    @opero(retries=2)
    @shell.fn
    def f(a: object) -> int:
        nonlocal calls
        calls += 1
        return len(a)  # type: ignore[arg-type]

    with pytest.raises(AllFailedError):
        shell.call(f, 5)
    assert calls == 3


# The async shell must back off with the loop free.  Measured on the real clock:
# a peer task wakes every few milliseconds and records when; the loop is free
# during the backoff if the peer woke many times between the failed attempt and
# the retry, with no long gap.  A blocking backoff leaves no wake-up in that window.
BACKOFF = 0.25
PEER_INTERVAL = 0.005


async def _peer_wakeups_during_backoff() -> tuple[float, list[float]]:
    """``(window, gaps)``: the backoff's real length and the gaps between the peer's wake-ups.

    The first gap runs from the failed attempt to the peer's first wake-up, the
    last one from its last wake-up to the retry, so a loop blocked for the whole
    backoff shows as one gap as long as the window.
    """
    flaky = Flaky(1)

    @opero(retries=1, min_delay=BACKOFF)
    async def call() -> str:
        return flaky()

    wakeups: list[float] = []
    stop = asyncio.Event()

    async def peer() -> None:
        while not stop.is_set():
            await asyncio.sleep(PEER_INTERVAL)
            wakeups.append(time.monotonic())

    peer_task = asyncio.ensure_future(peer())
    await asyncio.sleep(0)  # the peer is waiting on the loop before the call starts
    try:
        assert await call() == "ok"
    finally:
        stop.set()
        await peer_task
    failed_at, retried_at = flaky.started
    inside = [t for t in wakeups if failed_at < t < retried_at]
    edges = [failed_at, *inside, retried_at]
    return retried_at - failed_at, [b - a for a, b in itertools.pairwise(edges)]


@pytest.mark.asyncio
async def test_async_backoff_does_not_block_the_loop() -> None:
    window, gaps = await _peer_wakeups_during_backoff()
    assert window >= BACKOFF * 0.9  # the backoff really waited (real clock)
    # Ideally ~50 wake-ups; 10 leaves room for a loaded machine, and a blocked loop gives 0.
    assert len(gaps) - 1 >= 10, f"peer woke {len(gaps) - 1} times in a {window:.3f}s backoff"
    assert max(gaps) < BACKOFF / 2, f"the loop stalled for {max(gaps):.3f}s during the backoff"


class _BlockingClock:
    """Real time whose async sleep blocks the loop: what a broken async shell would do."""

    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    async def async_sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.mark.asyncio
async def test_the_loop_probe_catches_a_blocking_backoff() -> None:
    # The measurement above, with a backoff that blocks: it must see the stall.
    with use_clock(_BlockingClock()):
        window, gaps = await _peer_wakeups_during_backoff()
    assert window >= BACKOFF * 0.9
    assert gaps == [window]  # not one wake-up while the backoff slept
