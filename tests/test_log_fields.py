"""Every record of the "opero" logger carries the six opero_* fields as attributes (``extra``),
None where one does not apply, so a JSON formatter needs no parsing of the message."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from opero import AllFailedError, Breaker, CircuitOpenError, correlation, opero
from opero.testing import FakeClock
from opero.utils.logging import FIELDS
from shells import Shell

KEYS = ["sk-live-SECRET-AAAA-0001", "sk-live-SECRET-BBBB-0002", "sk-live-SECRET-CCCC-0003"]
SECRETS = [*KEYS, "SECRET", "acct-PRIVATE"]


class RateLimited(Exception):
    """A 429 with the server's Retry-After, in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("429 too many requests")
        self.retry_after = retry_after


class Collect(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(opero_logger: logging.Logger) -> Iterator[list[logging.LogRecord]]:
    """The records the "opero" logger handles during the test, at DEBUG."""
    handler = Collect()
    opero_logger.addHandler(handler)
    opero_logger.setLevel(logging.DEBUG)
    yield handler.records
    opero_logger.removeHandler(handler)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS}


def assert_complete_and_clean(records: list[logging.LogRecord]) -> None:
    """Each record has all six fields, and no secret in its message or any of its fields."""
    assert records
    for record in records:
        for name in FIELDS:
            assert hasattr(record, name), (name, record.getMessage())
        text = record.getMessage() + json.dumps(fields_of(record), default=str)
        for secret in SECRETS:
            assert secret not in text


def test_the_six_fields_are_the_documented_ones() -> None:
    assert FIELDS == (
        "opero_function",
        "opero_attempt",
        "opero_candidate",
        "opero_delay",
        "opero_reason",
        "opero_correlation_id",
    )


def test_retry_fallback_and_give_up_lines_carry_their_fields(
    records: list[logging.LogRecord], clock: FakeClock, shell: Shell
) -> None:
    def call_api(endpoint: str, api_key: str) -> None:
        raise ConnectionError("reset by peer")

    wrapped = opero(retries=1, min_delay=0.25, arg_fallback="api_key")(shell.fn(call_api))

    with correlation("req-9"), pytest.raises(AllFailedError):
        shell.call(wrapped, "/v1/acct-PRIVATE", api_key=KEYS[:2])

    assert_complete_and_clean(records)
    name = f"{__name__}.test_retry_fallback_and_give_up_lines_carry_their_fields.<locals>.call_api"
    seen = [
        (r.levelname, r.opero_attempt, r.opero_candidate, r.opero_delay, r.opero_reason)  # type: ignore[attr-defined]
        for r in records
    ]
    assert seen == [
        ("DEBUG", 1, 0, 0.0, None),  # candidate 0 failed; trying candidate 1 at once
        ("DEBUG", 1, 1, 0.25, "backoff"),  # attempt 1 failed; retry in 0.25 s
        ("DEBUG", 2, 0, 0.0, None),
        ("WARNING", 2, 1, None, None),  # gave up
    ]
    assert {r.opero_function for r in records} == {name}  # type: ignore[attr-defined]
    assert {r.opero_correlation_id for r in records} == {"req-9"}  # type: ignore[attr-defined]
    assert "retry 1 of 1 in 0.250s" in records[1].getMessage()  # the message stays readable


def test_rate_limit_and_retry_after_waits_are_named(
    records: list[logging.LogRecord], clock: FakeClock, shell: Shell
) -> None:
    calls = []

    def busy() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RateLimited(2.0)
        return "ok"

    wrapped = opero(retries=1, min_delay=0.1, rate_limit=1.0)(shell.fn(busy))

    assert shell.call(wrapped) == "ok"
    assert shell.call(wrapped) == "ok"

    assert_complete_and_clean(records)
    reasons = [(r.opero_reason, r.opero_delay) for r in records]  # type: ignore[attr-defined]
    assert ("retry_after", 2.0) in reasons  # the retry waits for the server's 2 s
    assert any(reason == "rate_limit" and delay > 0 for reason, delay in reasons)
    assert {r.opero_correlation_id for r in records} == {None}  # type: ignore[attr-defined]


def test_a_paused_function_logs_the_pause_with_its_reason(
    records: list[logging.LogRecord], clock: FakeClock
) -> None:
    @opero(retries=1, min_delay=0.1)
    def paused() -> None:
        raise RateLimited(1.5)

    with pytest.raises(AllFailedError):
        paused()

    assert_complete_and_clean(records)
    pause = [r for r in records if "paused for" in r.getMessage()]
    assert pause
    assert all(r.opero_reason == "retry_after" for r in pause)  # type: ignore[attr-defined]
    assert all(r.opero_delay == 1.5 for r in pause)  # type: ignore[attr-defined]


def test_a_key_pool_run_logs_complete_records(
    records: list[logging.LogRecord], clock: FakeClock
) -> None:
    @opero(
        retries=1,
        min_delay=0.1,
        arg_fallback="key",
        candidate_breaker=Breaker(failure_threshold=1, cooldown=60),
    )
    def call(key: list[str]) -> None:
        if key[0] != KEYS[2]:  # the candidate in use comes first
            raise RateLimited(5.0)

    call(key=KEYS)
    with pytest.raises(CircuitOpenError):  # both breakers opened on the first call
        call(key=KEYS[:2])

    assert_complete_and_clean(records)
    opened = [r for r in records if "breaker closed -> open" in r.getMessage()]
    assert [r.opero_candidate for r in opened] == [0, 1]  # type: ignore[attr-defined]
    rests = [r for r in records if "rests" in r.getMessage()]
    assert rests
    for rest in rests:
        assert (rest.opero_delay, rest.opero_reason) == (5.0, "retry_after")  # type: ignore[attr-defined]
    (refused,) = [r for r in records if "open or resting" in r.getMessage()]
    assert refused.opero_function.endswith(".call")  # type: ignore[attr-defined]
    assert all(r.opero_function.endswith(".call") for r in records)  # type: ignore[attr-defined]


def test_the_circuit_breakers_changes_name_the_function(
    records: list[logging.LogRecord], clock: FakeClock
) -> None:
    @opero(retries=0, circuit_breaker=Breaker(failure_threshold=1, cooldown=60))
    def guarded() -> None:
        raise ConnectionError("down")

    with pytest.raises(AllFailedError):
        guarded()

    assert_complete_and_clean(records)
    (change,) = [r for r in records if "circuit breaker" in r.getMessage()]
    assert change.opero_function.endswith(".guarded")  # type: ignore[attr-defined]


def test_cache_hits_and_unrouted_errors_name_the_function(
    records: list[logging.LogRecord], clock: FakeClock
) -> None:
    @opero(cache=True)
    def cached(x: int) -> int:
        return x

    @opero(retry_on=ConnectionError)
    def wrong(x: int) -> None:
        raise ValueError(x)

    cached(1)
    cached(1)
    with pytest.raises(ValueError, match="2"):
        wrong(2)

    assert_complete_and_clean(records)
    hit, unrouted = records
    assert hit.opero_function.endswith(".cached")  # type: ignore[attr-defined]
    assert unrouted.opero_function.endswith(".wrong")  # type: ignore[attr-defined]
    assert (hit.opero_attempt, hit.opero_delay, hit.opero_reason) == (None, None, None)  # type: ignore[attr-defined]


def test_a_record_about_no_call_has_the_fields_as_none(
    records: list[logging.LogRecord],
) -> None:
    def broken() -> None:
        raise RuntimeError("callback broke")

    @opero(on_success=broken)
    def work() -> int:
        return 1

    work()
    (record,) = records
    assert fields_of(record) == dict.fromkeys(FIELDS)


def test_records_of_other_code_on_the_opero_logger_get_them_too(
    records: list[logging.LogRecord],
) -> None:
    with correlation("mine"):
        logging.getLogger("opero").info("written by hand")
    (record,) = records
    assert fields_of(record) == {**dict.fromkeys(FIELDS), "opero_correlation_id": "mine"}


def test_a_json_formatter_needs_no_parsing(opero_logger: logging.Logger, clock: FakeClock) -> None:
    class JSONFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return json.dumps({"event": record.getMessage(), **fields_of(record)})

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JSONFormatter())
    opero_logger.addHandler(handler)
    opero_logger.setLevel(logging.DEBUG)

    @opero(retries=1, min_delay=0.5)
    def flaky() -> None:
        raise TimeoutError

    with correlation("job-3"), pytest.raises(AllFailedError):
        flaky()

    retry, gave_up = (json.loads(line) for line in out.getvalue().splitlines())
    assert retry["opero_delay"] == 0.5
    assert retry["opero_reason"] == "backoff"
    assert retry["opero_attempt"] == 1
    assert gave_up["opero_attempt"] == 2
    assert gave_up["opero_correlation_id"] == "job-3"
