"""Shared fixtures: a fake clock so no test waits for real backoff or TTLs; the opero logger;
the ``shell`` a decorator test runs on (sync or async, see ``shells.py``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from opero.testing import FakeClock
from shells import Shell

# CPython bug gh-131788 (3.13.0 to 3.13.6; fixed in 3.13.7): a garbage collection that runs a dead
# semaphore's finalizer while the same thread is inside the multiprocessing resource tracker makes
# the stdlib warn "called reentrantly" from that finalizer.  It can land in any test that starts
# processes, at a moment no test controls; filterwarnings=error turns it into an unraisable
# exception that fails whichever test is running.  Only that one stdlib message is ignored, and
# only on the affected releases; no assertion is skipped.
_TRACKER_REENTRANCY = "ignore:ResourceTracker called reentrantly:UserWarning"


def pytest_configure(config: pytest.Config) -> None:
    if (3, 13) <= sys.version_info[:3] < (3, 13, 7):
        config.addinivalue_line("filterwarnings", _TRACKER_REENTRANCY)


@pytest.fixture(autouse=True)
def _instrumentation_left_off() -> Iterator[None]:
    """A test that leaves opero's instrumentation on moves every later test's calls to the
    engine's path (first attempts timed, hooks called): fail that test, and switch it off."""
    yield
    from opero import instrumentation  # noqa: PLC0415

    if instrumentation.is_enabled():
        instrumentation.reset()
        pytest.fail("the test left opero's instrumentation on (hooks or OpenTelemetry)")


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
