"""Shared fixtures: a fake clock so no test waits for real backoff or TTLs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opero.testing import FakeClock


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Virtual time for the test: sleeps return at once and are recorded."""
    with FakeClock(start=1000.0) as fake:
        yield fake
