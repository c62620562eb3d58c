"""AllFailedError keeps what it holds across serializers, and its message agrees with itself."""

from __future__ import annotations

import json
import pickle

import cloudpickle
import pytest

from opero import AllFailedError, opero
from opero.exceptions import AttemptError
from opero.testing import FakeClock


def failed_call() -> AllFailedError:
    @opero(retries=1, arg_fallback="key")
    def fetch(key: list[str] = ["a", "b"]) -> None:  # noqa: B006 - the documented style
        raise ConnectionError(f"refused ({len(key)})")

    with FakeClock(), pytest.raises(AllFailedError) as info:
        fetch()
    return info.value


def test_the_message_counts_agree() -> None:
    error = failed_call()
    first_line = str(error).splitlines()[0]
    assert first_line == (
        "4 calls of test_exceptions.failed_call.<locals>.fetch failed: "
        "2 attempts \u00d7 2 candidates"
    )
    assert error.attempt_count == len(error.errors) == 4


def test_the_message_without_candidates_and_in_the_singular() -> None:
    @opero(retries=0)
    def once() -> None:
        raise TimeoutError

    with pytest.raises(AllFailedError) as info:
        once()
    assert str(info.value).splitlines()[0] == (
        "1 call of test_exceptions.test_the_message_without_candidates_and_in_the_singular"
        ".<locals>.once failed: 1 attempt"
    )


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_pickle_keeps_errors_count_and_cause(dumps: object) -> None:
    error = failed_call()
    copy = pickle.loads(dumps(error))  # type: ignore[operator]
    assert copy.attempt_count == 4
    assert [type(e) for e in copy.errors] == [ConnectionError] * 4
    assert [str(e) for e in copy.errors] == [str(e) for e in error.errors]
    assert copy.__cause__ is copy.errors[-1]
    assert str(copy) == str(error)


def test_a_rebuild_from_json_args_stays_consistent() -> None:
    # Celery's json result backend stores exc.args and rebuilds with cls(*args).
    error = failed_call()
    stored = json.loads(json.dumps(list(error.args)))
    rebuilt = AllFailedError(*stored)
    assert rebuilt.attempt_count == len(rebuilt.errors) == 4
    assert all(type(e) is AttemptError for e in rebuilt.errors)
    assert [str(e) for e in rebuilt.errors] == ["ConnectionError: refused (1)"] * 4
    assert str(rebuilt) == str(error)
    assert rebuilt.args == error.args
    # And again: a rebuilt error survives another round trip unchanged.
    again = AllFailedError(*json.loads(json.dumps(list(rebuilt.args))))
    assert str(again) == str(error)
    assert pickle.loads(pickle.dumps(again)).attempt_count == 4


def test_constructed_by_hand_as_the_documents_show() -> None:
    error = AllFailedError("All 2 attempts failed", errors=[ValueError("a"), KeyError("b")])
    assert error.attempt_count == 2
    assert error.args == ("All 2 attempts failed", ("ValueError: a", "KeyError: 'b'"))
    bare = AllFailedError("nothing ran")
    assert (bare.attempt_count, bare.errors, str(bare)) == (0, [], "nothing ran")
    assert AllFailedError(*bare.args).attempt_count == 0
