"""The deadline's building blocks: DeadlineExceeded, and remaining() for an attempt."""

from __future__ import annotations

import asyncio
import contextvars
import pickle
import threading

import pytest

import opero
from opero import AllFailedError, DeadlineExceeded
from opero.core.deadline import attempt_bound, remaining
from opero.testing import FakeClock


def test_deadline_exceeded_is_both_all_failed_and_timeout() -> None:
    assert issubclass(DeadlineExceeded, AllFailedError)
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert opero.DeadlineExceeded is DeadlineExceeded
    error = DeadlineExceeded("deadline of 2s passed", [ValueError("a"), TimeoutError()])
    for kind in (TimeoutError, AllFailedError, opero.OperoError):
        with pytest.raises(kind):
            raise error
    assert error.attempt_count == 2
    assert error.last_error is error.errors[-1]
    assert str(error).startswith("deadline of 2s passed\nAttempt details:\n  1. ValueError: a")
    # OSError's (errno, strerror) reading of two arguments must not apply.
    assert error.errno is None
    assert error.strerror is None


def test_deadline_exceeded_pickles_with_its_errors_and_cause() -> None:
    error = DeadlineExceeded("deadline of 2s passed", [ValueError("a"), TimeoutError("t")])
    error.__cause__ = error.errors[-1]
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is DeadlineExceeded
    assert [str(e) for e in clone.errors] == ["a", "t"]
    assert clone.__cause__ is clone.errors[-1]
    assert str(clone) == str(error)


def test_deadline_exceeded_rebuilds_from_json_args() -> None:
    error = DeadlineExceeded("deadline passed", [KeyError("k")])
    rebuilt = DeadlineExceeded(*error.args)
    assert rebuilt.attempt_count == 1
    assert str(rebuilt) == str(error)


def test_remaining_is_none_outside_any_bounded_call(clock: FakeClock) -> None:
    assert remaining() is None
    with attempt_bound(None):
        assert remaining() is None
    assert remaining() is None


def test_remaining_counts_down_on_the_clock_and_never_goes_negative(clock: FakeClock) -> None:
    with attempt_bound(clock.now() + 2.0):
        assert remaining() == 2.0
        clock.advance(0.5)
        assert remaining() == 1.5
        clock.sleep(5)
        assert remaining() == 0.0
    assert remaining() is None


def test_nested_bounds_keep_the_earlier_end(clock: FakeClock) -> None:
    start = clock.now()
    with attempt_bound(start + 3):
        with attempt_bound(start + 10):
            assert remaining() == 3.0
        with attempt_bound(start + 1):
            assert remaining() == 1.0
        with attempt_bound(None):
            assert remaining() == 3.0
        assert remaining() == 3.0


def test_a_bound_is_reset_when_the_block_raises(clock: FakeClock) -> None:
    with pytest.raises(KeyError), attempt_bound(clock.now() + 1):
        raise KeyError
    assert remaining() is None


def test_worker_threads_see_the_bound_through_a_copied_context(clock: FakeClock) -> None:
    seen: list[float | None] = []
    with attempt_bound(clock.now() + 4):
        context = contextvars.copy_context()
    plain = threading.Thread(target=lambda: seen.append(remaining()))
    copied = threading.Thread(target=context.run, args=(lambda: seen.append(remaining()),))
    for thread in (plain, copied):
        thread.start()
        thread.join()
    assert seen == [None, 4.0]


def test_each_asyncio_task_has_its_own_bound(clock: FakeClock) -> None:
    async def attempt(seconds: float) -> float | None:
        with attempt_bound(clock.now() + seconds):
            await asyncio.sleep(0)
            return remaining()

    async def main() -> list[float | None]:
        results = await asyncio.gather(attempt(1), attempt(2), attempt(3))
        return [*results, remaining()]

    assert asyncio.run(main()) == [1.0, 2.0, 3.0, None]
