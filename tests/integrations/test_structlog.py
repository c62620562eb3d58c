"""examples/structlog_logging.py: opero's records rendered by structlog; values never logged."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest

pytest.importorskip("structlog")

from examples.structlog_logging import send_opero_logs_to_structlog

from opero import AllFailedError, configure_logging, correlation, opero
from opero.testing import FakeClock
from opero.utils.logging import FIELDS

#: Argument values that must never reach a log line.
KEYS = ["sk-live-FIRST-0001", "sk-live-SECOND-0002"]
ENDPOINT = "/v1/accounts/acct-PRIVATE-77"


@pytest.fixture
def stream(opero_logger: logging.Logger) -> io.StringIO:
    """Where the structlog handler of the example writes, at DEBUG."""
    out = io.StringIO()
    send_opero_logs_to_structlog(level=logging.DEBUG, stream=out)
    return out


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, parsed: each one must be a JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def flaky_api(failures: int) -> tuple[Any, list[str]]:
    """An @opero function that fails ``failures`` times with the first key, and its call log."""
    used: list[str] = []

    @opero(retries=2, min_delay=0.25, arg_fallback="api_key")
    def call_api(endpoint: str, api_key: list[str]) -> str:
        used.append(api_key[0])
        if len(used) <= failures:
            raise ConnectionError("connection reset by peer")
        return "ok"

    return call_api, used


def test_retry_and_fallback_lines_arrive_as_structlog_json(
    stream: io.StringIO, clock: FakeClock
) -> None:
    call_api, used = flaky_api(failures=3)

    assert call_api(ENDPOINT, api_key=KEYS) == "ok"

    assert used == [KEYS[0], KEYS[1], KEYS[0], KEYS[1]]
    logged = events(stream)
    fallback, retry, second_fallback = (e["event"] for e in logged)
    assert "call_api candidate 0 of 'api_key' failed (ConnectionError); trying candidate 1" in (
        fallback
    )
    assert "call_api attempt 1 failed (ConnectionError); retry 1 of 2 in 0.250s" in retry
    assert second_fallback == fallback
    for event in logged:
        assert event["level"] == "debug"
        assert event["logger"] == "opero"
        assert event["timestamp"].endswith("Z")
        assert "_record" not in event  # remove_processors_meta ran


def test_each_event_carries_the_six_opero_fields(stream: io.StringIO, clock: FakeClock) -> None:
    call_api, _ = flaky_api(failures=1000)

    with correlation("req-77"), pytest.raises(AllFailedError):
        call_api(ENDPOINT, api_key=KEYS)

    logged = events(stream)
    for event in logged:
        assert set(FIELDS) <= set(event)
        assert event["opero_function"].endswith("flaky_api.<locals>.call_api")
        assert event["opero_correlation_id"] == "req-77"
    fallback, retry = logged[0], logged[1]
    assert (fallback["opero_attempt"], fallback["opero_candidate"]) == (1, 0)
    assert (fallback["opero_delay"], fallback["opero_reason"]) == (0.0, None)
    assert (retry["opero_attempt"], retry["opero_candidate"]) == (1, 1)
    assert (retry["opero_delay"], retry["opero_reason"]) == (0.25, "backoff")
    assert logged[-1]["level"] == "warning"
    assert (logged[-1]["opero_delay"], logged[-1]["opero_reason"]) == (None, None)


def test_argument_values_never_reach_the_output(stream: io.StringIO, clock: FakeClock) -> None:
    call_api, used = flaky_api(failures=1000)

    with pytest.raises(AllFailedError) as info:
        call_api(ENDPOINT, api_key=KEYS)

    assert len(used) == 6  # 3 attempts x 2 keys, all logged about
    text = stream.getvalue()
    assert len(events(stream)) == 6  # 3 fallbacks, 2 retries, 1 give-up
    assert events(stream)[-1]["event"].endswith(
        "gave up after 6 calls (3 attempts × 2 candidates); last error ConnectionError"
    )
    for secret in [*KEYS, ENDPOINT, "FIRST", "SECOND", "PRIVATE"]:
        assert secret not in text
        assert secret not in str(info.value)


def test_giving_up_is_a_warning_event(stream: io.StringIO, clock: FakeClock) -> None:
    @opero(retries=1)
    async def fetch(token: str) -> None:
        raise TimeoutError("upstream timed out")

    with pytest.raises(AllFailedError):
        asyncio.run(fetch("tok-PRIVATE"))

    *_, last = events(stream)
    assert last["level"] == "warning"
    assert last["event"].endswith("gave up after 2 calls (2 attempts); last error TimeoutError")
    assert "PRIVATE" not in stream.getvalue()


def test_cache_hits_of_async_functions_are_logged(stream: io.StringIO) -> None:
    @opero(cache=True)
    async def lookup(user: str) -> int:
        return len(user)

    async def twice() -> list[int]:
        return [await lookup("user-PRIVATE"), await lookup("user-PRIVATE")]

    assert asyncio.run(twice()) == [12, 12]
    (hit,) = events(stream)
    assert hit["event"].endswith(".lookup cache hit")
    assert "PRIVATE" not in stream.getvalue()


def test_tracebacks_are_rendered_into_the_event(stream: io.StringIO) -> None:
    def broken_callback() -> None:
        raise RuntimeError("callback broke")

    @opero(on_success=broken_callback)
    def work() -> int:
        return 1

    assert work() == 1
    (event,) = events(stream)
    assert event["level"] == "warning"
    assert "callback raised" in event["event"]
    assert "RuntimeError: callback broke" in event["exception"]


def test_the_level_filters_debug_lines(opero_logger: logging.Logger, clock: FakeClock) -> None:
    out = io.StringIO()
    send_opero_logs_to_structlog(level=logging.INFO, stream=out)
    call_api, _ = flaky_api(failures=3)

    assert call_api(ENDPOINT, api_key=KEYS) == "ok"
    assert out.getvalue() == ""


def test_the_returned_handler_can_be_removed(
    opero_logger: logging.Logger, clock: FakeClock
) -> None:
    out = io.StringIO()
    handler = send_opero_logs_to_structlog(stream=out)
    assert handler in opero_logger.handlers
    opero_logger.removeHandler(handler)

    call_api, _ = flaky_api(failures=1)
    call_api(ENDPOINT, api_key=KEYS)
    assert out.getvalue() == ""


def test_configure_logging_prints_the_same_events_as_plain_text(
    opero_logger: logging.Logger, clock: FakeClock
) -> None:
    out = io.StringIO()
    logger = configure_logging(
        level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s", stream=out
    )
    assert logger is opero_logger
    call_api, _ = flaky_api(failures=2)

    call_api(ENDPOINT, api_key=KEYS)

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("DEBUG opero: opero: ")
    assert lines[1].endswith("call_api attempt 1 failed (ConnectionError); retry 1 of 2 in 0.250s")
    assert not any(secret in out.getvalue() for secret in [*KEYS, ENDPOINT])
