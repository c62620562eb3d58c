"""@opmap per-item resilience in every mode: failures in place, retries, fallbacks.

Calls are counted in a file (one line per call) because in process modes the
function runs in worker processes whose memory the test cannot see.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from opmap_helpers import (
    MODES,
    afail_first_attempt,
    afail_on_three,
    awith_key,
    fail_first_attempt,
    fail_on_three,
    lines,
    pick,
    run,
    with_key,
)

from opero import AllFailedError, opmap

FAST_RETRY = {"min_delay": 0.001, "max_delay": 0.001}


@pytest.mark.parametrize("mode", MODES)
def test_failed_items_come_back_in_place_as_exceptions(mode: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    mapped = opmap(
        mode=mode, workers=2, progress=False, retries=1, retry_on=ConnectionError, **FAST_RETRY
    )(pick(mode, fail_on_three, afail_on_three))
    results = run(mapped, [1, 2, 3, 4, 5], str(calls))

    assert len(results) == 5
    assert results[:2] == [1, 4]
    assert results[4] == 25
    # 3 keeps failing with a retryable error: AllFailedError with every attempt's error.
    gave_up = results[2]
    assert isinstance(gave_up, AllFailedError)
    assert gave_up.attempt_count == 2
    assert [type(e) for e in gave_up.errors] == [ConnectionError, ConnectionError]
    # 4 raises a non-retryable error: it comes back unwrapped, after a single call.
    assert isinstance(results[3], KeyError)
    assert not isinstance(results[3], AllFailedError)
    assert Counter(lines(calls)) == {"1": 1, "2": 1, "3": 2, "4": 1, "5": 1}


@pytest.mark.parametrize(
    "mode",
    MODES,
)
def test_given_up_item_keeps_last_error_as_cause(mode: str, tmp_path: Path) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False, retries=1, **FAST_RETRY)(
        pick(mode, fail_on_three, afail_on_three)
    )
    [gave_up] = run(mapped, [3], str(tmp_path / "calls.txt"))
    assert isinstance(gave_up, AllFailedError)
    # CONTRACT 5: __cause__ is the last error, wherever the item ran.
    assert gave_up.__cause__ is gave_up.errors[-1]


@pytest.mark.parametrize("mode", MODES)
def test_unordered_failures_are_reported_too(mode: str, tmp_path: Path) -> None:
    mapped = opmap(
        mode=mode, workers=2, ordered=False, progress=False, retries=0, retry_on=ConnectionError
    )(pick(mode, fail_on_three, afail_on_three))
    results = run(mapped, [1, 2, 3, 4, 5], str(tmp_path / "calls.txt"))
    assert len(results) == 5
    values = sorted(r for r in results if isinstance(r, int))
    assert values == [1, 4, 25]
    assert sum(isinstance(r, AllFailedError) for r in results) == 1
    assert sum(isinstance(r, KeyError) for r in results) == 1


@pytest.mark.parametrize("mode", MODES)
def test_each_item_is_retried_on_its_own(mode: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    mapped = opmap(mode=mode, workers=2, progress=False, retries=2, **FAST_RETRY)(
        pick(mode, fail_first_attempt, afail_first_attempt)
    )
    assert run(mapped, [1, 2, 3, 4], str(calls)) == [10, 20, 30, 40]
    # Exactly two attempts per item: the failed first one and the successful retry.
    assert Counter(lines(calls)) == {"1": 2, "2": 2, "3": 2, "4": 2}


@pytest.mark.parametrize("mode", MODES)
def test_retries_zero_means_one_attempt_per_item(mode: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    mapped = opmap(mode=mode, workers=2, progress=False, retries=0)(
        pick(mode, fail_first_attempt, afail_first_attempt)
    )
    results = run(mapped, [1, 2], str(calls))
    assert all(isinstance(r, AllFailedError) and r.attempt_count == 1 for r in results)
    assert Counter(lines(calls)) == {"1": 1, "2": 1}


@pytest.mark.parametrize("mode", MODES)
def test_fallback_is_walked_per_item(mode: str) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False, retries=0, arg_fallback="key")(
        pick(mode, with_key, awith_key)
    )
    assert run(mapped, [1, 2, 3], key=["bad", "worse", "good"]) == ["1:good", "2:good", "3:good"]


@pytest.mark.parametrize("mode", MODES)
def test_fallback_exhausted_is_all_failed_for_that_item_only(mode: str) -> None:
    mapped = opmap(
        mode=mode, workers=2, progress=False, retries=1, arg_fallback="key", **FAST_RETRY
    )(pick(mode, with_key, awith_key))
    results = run(mapped, [1, 2], key=["bad", "worse"])
    for result in results:
        assert isinstance(result, AllFailedError)
        # two attempts x two candidates, in order
        assert result.attempt_count == 4
        assert all(isinstance(e, PermissionError) for e in result.errors)
    assert run(mapped, [5], key=["good"]) == ["5:good"]


def test_thread_mode_statistics_count_every_item(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    mapped = opmap(mode="thread", workers=2, progress=False, retries=2, **FAST_RETRY)(
        fail_first_attempt
    )
    assert mapped([1, 2, 3], str(calls)) == [10, 20, 30]
    stats = mapped.statistics()
    assert stats.calls == 3
    assert stats.retries == 3
    assert stats.attempts == 6


@pytest.mark.parametrize(
    "mode",
    MODES,
)
def test_statistics_count_calls_and_failures_in_every_mode(mode: str, tmp_path: Path) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False, retries=0)(
        pick(mode, fail_on_three, afail_on_three)
    )
    results = run(mapped, [1, 2, 3, 5], str(tmp_path / "calls.txt"))
    assert isinstance(results[2], AllFailedError)
    stats = mapped.statistics()
    assert stats.calls == 4
    assert stats.failures == 1
