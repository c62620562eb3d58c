"""AllFailedError.attempts: one AttemptRecord per failed call, for both shells and every path
to the error (retries, fallbacks, Retry-After, rate limit, deadline, rejected results),
kept across pickling and process maps, and never showing an argument or a candidate."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from opero import AllFailedError, AttemptRecord, DeadlineExceeded, opero, opmap
from opero.testing import FakeClock
from shells import Shell

#: Secret-looking candidates: they must never appear in a record, an error or a repr.
KEYS = ["sk-live-SECRET-AAAA-0001", "sk-live-SECRET-BBBB-0002"]


class RateLimited(Exception):
    """A server's 429 with its Retry-After, in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("429 too many requests")
        self.retry_after = retry_after


def failing(clock: FakeClock, error: BaseException, took: float = 0.1) -> Any:
    """A body that takes ``took`` seconds of fake time, then raises ``error``."""

    def body(*args: Any, **kwargs: Any) -> None:
        clock.advance(took)
        raise error

    return body


def failure_of(shell: Shell, wrapped: Any, *args: Any, **kwargs: Any) -> AllFailedError:
    with pytest.raises(AllFailedError) as info:
        shell.call(wrapped, *args, **kwargs)
    return info.value


def test_retries_give_one_record_per_attempt(clock: FakeClock, shell: Shell) -> None:
    wrapped = opero(retries=2, min_delay=0.25)(shell.fn(failing(clock, ConnectionError("x"))))
    start = clock.wall()

    error = failure_of(shell, wrapped)

    records = error.attempts
    assert [r.attempt for r in records] == [1, 2, 3]
    assert [r.candidate for r in records] == [None, None, None]
    assert [r.error_type for r in records] == ["ConnectionError"] * 3
    assert [r.error for r in records] == error.errors
    assert [r.wait for r in records] == [0.25, 0.375, None]
    assert [r.wait_reason for r in records] == ["backoff", "backoff", None]
    # The first attempt ran on the shell's fast path: not timed, so success costs nothing.
    assert records[0].start is None
    assert records[0].duration is None
    assert records[1].duration == pytest.approx(0.1)
    assert records[1].start == pytest.approx(start + 0.1 + 0.25)
    assert records[2].start == pytest.approx(start + 0.1 + 0.25 + 0.1 + 0.375)
    assert all(isinstance(r, AttemptRecord) for r in records)


def test_a_call_run_whole_in_the_engine_times_its_first_attempt_too(
    clock: FakeClock, shell: Shell
) -> None:
    wrapped = opero(retries=1, min_delay=0.5, deadline=60)(
        shell.fn(failing(clock, OSError("x"), took=0.2))
    )
    start = clock.wall()

    error = failure_of(shell, wrapped)

    first, second = error.attempts
    assert first.start == pytest.approx(start)
    assert first.duration == pytest.approx(0.2)
    assert second.start == pytest.approx(start + 0.2 + 0.5)
    assert (first.wait, second.wait) == (0.5, None)


def test_fallback_records_name_candidates_by_index(clock: FakeClock, shell: Shell) -> None:
    def body(endpoint: str, api_key: str) -> None:
        clock.advance(0.05)
        raise PermissionError("rejected")

    wrapped = opero(retries=1, min_delay=1.0, arg_fallback="api_key", fallback_delay=0.2)(
        shell.fn(body)
    )

    error = failure_of(shell, wrapped, "/v1/secret-endpoint", api_key=KEYS)

    assert [(r.attempt, r.candidate) for r in error.attempts] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [r.wait for r in error.attempts] == [0.2, 1.0, 0.2, None]
    assert [r.wait_reason for r in error.attempts] == ["backoff", "backoff", "backoff", None]


def test_no_fallback_delay_is_a_wait_of_zero(clock: FakeClock, shell: Shell) -> None:
    def body(key: str) -> None:
        raise KeyError("k")

    wrapped = opero(retries=0, arg_fallback="key")(shell.fn(body))
    error = failure_of(shell, wrapped, key=KEYS)
    assert [(r.wait, r.wait_reason) for r in error.attempts] == [(0.0, None), (None, None)]


def test_a_longer_retry_after_is_the_reason(clock: FakeClock, shell: Shell) -> None:
    wrapped = opero(retries=1, min_delay=0.1)(shell.fn(failing(clock, RateLimited(3.0))))
    error = failure_of(shell, wrapped)
    assert [(r.wait, r.wait_reason) for r in error.attempts] == [(3.0, "retry_after"), (None, None)]


def test_a_shorter_retry_after_leaves_the_backoff_the_reason(
    clock: FakeClock, shell: Shell
) -> None:
    wrapped = opero(retries=1, min_delay=2.0)(shell.fn(failing(clock, RateLimited(0.5))))
    error = failure_of(shell, wrapped)
    assert error.attempts[0].wait == 2.0
    assert error.attempts[0].wait_reason == "backoff"


def test_a_rate_limit_slot_adds_to_the_wait(clock: FakeClock, shell: Shell) -> None:
    wrapped = opero(retries=1, min_delay=0.1, rate_limit=1.0)(
        shell.fn(failing(clock, ConnectionError("x"), took=0.0))
    )
    error = failure_of(shell, wrapped)
    first = error.attempts[0]
    # 0.1 s of backoff, then 0.9 s more for the next slot of one call a second.
    assert first.wait == pytest.approx(1.0)
    assert first.wait_reason == "rate_limit"


def test_the_deadline_error_carries_the_records_so_far(clock: FakeClock, shell: Shell) -> None:
    wrapped = opero(retries=5, min_delay=1.0, deadline=2.5)(
        shell.fn(failing(clock, ConnectionError("x"), took=0.5))
    )
    with pytest.raises(DeadlineExceeded) as info:
        shell.call(wrapped)
    records = info.value.attempts
    assert len(records) == len(info.value.errors) == 2
    assert records[-1].wait is None  # the next wait would not fit: none followed


def test_a_rejected_result_is_recorded_without_its_value(clock: FakeClock, shell: Shell) -> None:
    def body() -> str:
        return KEYS[0]

    wrapped = opero(retries=1, min_delay=0.1, retry_if_result=lambda value: True)(shell.fn(body))
    error = failure_of(shell, wrapped)
    assert [r.error_type for r in error.attempts] == ["ResultRejected", "ResultRejected"]
    assert all(KEYS[0] not in repr(r) for r in error.attempts)


def test_an_unrouted_error_propagates_without_records(clock: FakeClock, shell: Shell) -> None:
    wrapped = opero(retries=2, retry_on=ConnectionError)(shell.fn(failing(clock, ValueError("v"))))
    with pytest.raises(ValueError, match="v"):
        shell.call(wrapped)


def test_records_survive_a_pickle_round_trip(clock: FakeClock) -> None:
    @opero(retries=1, min_delay=0.25, arg_fallback="key")
    def call(key: str) -> None:
        clock.advance(0.1)
        raise ConnectionError("reset")

    with pytest.raises(AllFailedError) as info:
        call(key=KEYS)

    clone = pickle.loads(pickle.dumps(info.value))

    def fields(record: AttemptRecord) -> tuple[Any, ...]:
        data = record.as_dict()
        data.pop("error")
        return tuple(data.items())

    assert [fields(r) for r in clone.attempts] == [fields(r) for r in info.value.attempts]
    assert [r.error is e for r, e in zip(clone.attempts, clone.errors, strict=True)] == [True] * 4
    assert clone.correlation_id is None
    assert clone.__cause__ is clone.errors[-1]


def test_a_record_pickles_alone() -> None:
    record = AttemptRecord(2, 1, 1.5, 0.25, TimeoutError("slow"), 0.5, "backoff")
    clone = pickle.loads(pickle.dumps(record))
    assert (clone.attempt, clone.candidate, clone.start, clone.duration) == (2, 1, 1.5, 0.25)
    assert (clone.error_type, clone.wait, clone.wait_reason) == ("TimeoutError", 0.5, "backoff")
    assert isinstance(clone.error, TimeoutError)


def test_records_are_frozen() -> None:
    record = AttemptRecord(1, None, None, None, OSError("x"))
    with pytest.raises(AttributeError, match="frozen"):
        record.attempt = 2  # type: ignore[misc]


def test_no_candidate_or_argument_in_any_text(clock: FakeClock, shell: Shell) -> None:
    def body(endpoint: str, api_key: str) -> None:
        raise ConnectionError("reset by peer")

    wrapped = opero(retries=1, min_delay=0.1, arg_fallback="api_key")(shell.fn(body))
    error = failure_of(shell, wrapped, "/v1/accounts/acct-PRIVATE", api_key=KEYS)

    texts = [str(error), repr(error), *map(repr, error.attempts), *map(str, error.attempts)]
    for text in texts:
        for secret in [*KEYS, "SECRET", "PRIVATE"]:
            assert secret not in text
    assert "candidate=1" in repr(error.attempts[1])


def test_an_error_built_by_hand_has_no_records() -> None:
    error = AllFailedError("2 calls failed", [OSError("a"), OSError("b")])
    assert error.attempts == ()
    assert error.correlation_id is None
    rebuilt = AllFailedError(*error.args)  # the JSON form (Celery) keeps only the summaries
    assert rebuilt.attempts == ()


def always_reset(item: int, key: str) -> int:
    """Fails with every key: the records come back from the worker process."""
    raise ConnectionError("reset")


def test_records_come_back_from_a_process_map() -> None:
    mapped = opmap(
        mode="process",
        workers=1,
        progress=False,
        retries=1,
        min_delay=0.001,
        max_delay=0.001,
        arg_fallback="key",
    )(always_reset)

    (failed,) = mapped([1], key=KEYS)

    assert isinstance(failed, AllFailedError)
    assert [(r.attempt, r.candidate) for r in failed.attempts] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [r.wait_reason for r in failed.attempts] == [None, "backoff", None, None]
    assert all(r.duration is None or r.duration >= 0 for r in failed.attempts)
    assert [r.error for r in failed.attempts] == failed.errors
    assert all(secret not in repr(failed.attempts) for secret in KEYS)


def test_a_key_pools_budget_wait_is_a_rate_limit_wait(clock: FakeClock, shell: Shell) -> None:
    def body(key: list[str]) -> None:
        raise ConnectionError("reset")

    wrapped = opero(retries=1, min_delay=0.1, arg_fallback="key", candidate_rate_limit=1.0)(
        shell.fn(body)
    )

    error = failure_of(shell, wrapped, key=KEYS)

    assert [(r.attempt, r.candidate) for r in error.attempts] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    retry_wait = error.attempts[1]
    # 0.1 s of backoff, then 0.9 s for candidate 0's next slot (one call a second each).
    assert retry_wait.wait == pytest.approx(1.0)
    assert retry_wait.wait_reason == "rate_limit"


def test_a_resting_key_pool_waits_for_the_retry_after(clock: FakeClock, shell: Shell) -> None:
    def body(key: list[str]) -> None:
        raise RateLimited(5.0)

    wrapped = opero(
        retries=1, min_delay=0.1, arg_fallback="key", candidate_breaker=True, deadline=60
    )(shell.fn(body))

    error = failure_of(shell, wrapped, key=KEYS)

    assert [(r.wait, r.wait_reason) for r in error.attempts] == [
        (0.0, None),
        (5.0, "retry_after"),
        (0.0, None),
        (None, None),
    ]
