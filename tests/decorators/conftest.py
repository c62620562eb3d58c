"""The ``shell`` fixture: run a decorator test once on the sync and once on the async shell."""

from __future__ import annotations

import pytest
from shells import Shell


@pytest.fixture(params=["sync", "async"])
def shell(request: pytest.FixtureRequest) -> Shell:
    """The shell this run of the test is for; see ``shells.py``."""
    return Shell(request.param)
