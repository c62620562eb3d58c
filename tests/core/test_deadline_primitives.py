"""The deadline's building blocks: DeadlineExceeded, and the time left for an attempt."""

from __future__ import annotations

import pickle

import pytest

import opero
from opero import AllFailedError, DeadlineExceeded


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
