"""The "opero" logger: configure_logging, what is logged, and what never is."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys

import pytest

from opero import AllFailedError, configure_logging, opero
from opero.testing import FakeClock
from opero.utils import configure_logging as utils_configure_logging

SECRETS = ["sk-SECRET-123", "sk-SECRET-456", "sk-SECRET-789"]


def own_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """Handlers other than the NullHandler that importing opero attaches."""
    return [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]


# --- configure_logging --------------------------------------------------------------------


def test_configure_logging_returns_the_opero_logger(opero_logger: logging.Logger) -> None:
    logger = configure_logging(level=logging.DEBUG, stream=io.StringIO())
    assert logger is logging.getLogger("opero")
    assert logger.level == logging.DEBUG
    assert utils_configure_logging is configure_logging


def test_configure_logging_twice_keeps_one_handler(opero_logger: logging.Logger) -> None:
    before = own_handlers(opero_logger)
    first, second = io.StringIO(), io.StringIO()
    configure_logging(level=logging.INFO, stream=first)
    configure_logging(level=logging.INFO, stream=second)
    added = [h for h in own_handlers(opero_logger) if h not in before]
    assert len(added) == 1
    opero_logger.info("hello")
    assert first.getvalue() == ""
    assert second.getvalue().count("hello") == 1


def test_configure_logging_writes_to_the_stream_with_the_format(
    opero_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging(level="WARNING", format="%(levelname)s|%(name)s|%(message)s", stream=stream)
    opero_logger.info("hidden")
    opero_logger.warning("shown")
    assert stream.getvalue() == "WARNING|opero|shown\n"


def test_configure_logging_defaults_to_stderr(
    opero_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level=logging.INFO)
    opero_logger.info("to stderr")
    captured = capsys.readouterr()
    assert "to stderr" in captured.err
    assert "INFO" in captured.err
    assert captured.out == ""


def test_importing_opero_leaves_the_root_logger_alone() -> None:
    code = (
        "import logging, opero\n"
        "root = logging.getLogger()\n"
        "mine = logging.getLogger('opero').handlers\n"
        "print(len(root.handlers), root.level, [type(h).__name__ for h in mine])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.split(maxsplit=2) == ["0", str(logging.WARNING), "['NullHandler']\n"]
    assert result.stderr == ""


# --- what is logged -----------------------------------------------------------------------


def debug_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "opero" and r.levelno == 10]


def test_retry_is_logged_at_debug(caplog: pytest.LogCaptureFixture, clock: FakeClock) -> None:
    caplog.set_level(logging.DEBUG, logger="opero")
    attempts = 0

    @opero(retries=2, min_delay=1.5)
    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError("down")
        return "ok"

    assert flaky() == "ok"
    messages = debug_messages(caplog)
    assert len(messages) == 1
    assert "flaky" in messages[0]
    assert "attempt 1 failed (ConnectionError)" in messages[0]
    assert "1.500s" in messages[0]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_fallback_is_logged_at_debug_with_the_candidate_index(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="opero")

    @opero(retries=0, arg_fallback="server")
    def fetch(server: list[str] = ["primary", "backup"]) -> str:  # noqa: B006
        if server[0] == "primary":
            raise TimeoutError("slow")
        return server[0]

    assert fetch() == "backup"
    (message,) = debug_messages(caplog)
    assert "candidate 0" in message
    assert "trying candidate 1" in message
    assert "TimeoutError" in message
    assert "primary" not in message
    assert "backup" not in message


def test_cache_hit_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="opero")

    @opero(cache=True)
    def square(x: int) -> int:
        return x * x

    square(12345)
    assert debug_messages(caplog) == []
    square(12345)
    (message,) = debug_messages(caplog)
    assert "square" in message
    assert "cache hit" in message
    assert "12345" not in message


def test_rate_limit_wait_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="opero")

    @opero(rate_limit=4)
    def ping() -> None:
        """Rate limited."""

    ping()
    assert debug_messages(caplog) == []
    ping()
    (message,) = debug_messages(caplog)
    assert "ping" in message
    assert "rate-limited" in message
    assert "0.250s" in message


def test_nothing_is_logged_below_debug_level(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    caplog.set_level(logging.INFO, logger="opero")

    @opero(retries=1, cache=True, rate_limit=10)
    def flaky(x: int) -> int:
        if not clock.sleeps:
            raise ConnectionError("down")
        return x

    assert flaky(1) == 1
    assert flaky(1) == 1
    assert clock.sleeps  # there was a retry, a real event to log at DEBUG
    assert [r for r in caplog.records if r.name == "opero"] == []


def test_giving_up_is_logged_at_warning(caplog: pytest.LogCaptureFixture, clock: FakeClock) -> None:
    caplog.set_level(logging.WARNING, logger="opero")

    @opero(retries=2)
    def broken() -> None:
        raise ValueError("bad")

    with pytest.raises(AllFailedError):
        broken()
    (record,) = [r for r in caplog.records if r.name == "opero"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "broken" in message
    assert "3 attempts" in message
    assert "ValueError" in message


# --- secrets stay out -------------------------------------------------------------------


def test_fallback_candidates_never_reach_logs_or_errors(
    caplog: pytest.LogCaptureFixture, clock: FakeClock, opero_logger: logging.Logger
) -> None:
    caplog.set_level(logging.DEBUG, logger="opero")
    stream = io.StringIO()
    configure_logging(level=logging.DEBUG, stream=stream)
    used: list[str] = []

    @opero(retries=1, arg_fallback="api_key", min_delay=0.5)
    def call_api(endpoint: str, api_key: list[str]) -> str:
        used.append(api_key[0])
        raise PermissionError(f"{endpoint}: key rejected")

    with pytest.raises(AllFailedError) as info:
        call_api("/v1/items", api_key=SECRETS)

    assert used == SECRETS * 2  # every candidate was tried, in both attempts
    error = info.value
    assert error.attempt_count == 6
    texts = {
        "caplog": caplog.text,
        "stream": stream.getvalue(),
        "str": str(error),
        "repr": repr(error),
        "cause": repr(error.__cause__),
        "args": repr(error.args),
    }
    for where, text in texts.items():
        assert "SECRET" not in text, where
    assert all("SECRET" not in str(arg) for r in caplog.records for arg in (r.args or ()))
    # The log says which candidate failed, by index.
    log = stream.getvalue()
    assert "candidate 0" in caplog.text
    assert "candidate 0" in log
    assert "candidate 1" in log
    assert "trying candidate 2" in log
    assert "gave up after 6 calls (2 attempts × 3 candidates)" in log
    assert "PermissionError" in log


def test_candidates_stay_out_of_logs_for_async_functions(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="opero")

    @opero(retries=0, arg_fallback="api_key")
    async def call_api(api_key: list[str] = SECRETS) -> str:
        raise ConnectionError("refused")

    with pytest.raises(AllFailedError) as info:
        asyncio.run(call_api())
    assert info.value.attempt_count == 3
    assert "SECRET" not in caplog.text
    assert "SECRET" not in str(info.value)
    assert "candidate 1" in caplog.text
