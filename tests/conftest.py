"""Shared fixtures: a fake clock so no test waits for real backoff or TTLs; the opero logger;
the ``shell`` a decorator test runs on (sync or async, see ``shells.py``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from shells import Shell

from opero.testing import FakeClock


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Virtual time for the test: sleeps return at once and are recorded."""
    with FakeClock(start=1000.0) as fake:
        yield fake


@pytest.fixture
def opero_logger() -> Iterator[logging.Logger]:
    """The "opero" logger, with its handlers and level put back after the test."""
    logger = logging.getLogger("opero")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest) -> Shell:
    """The shell this run of the test is for; see ``shells.py``."""
    return Shell(request.param)
