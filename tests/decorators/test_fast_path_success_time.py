"""The time the key pool's fast path records a success at (``opero.core.pool_fast.done``).

The fast path passes the time its pick read, to spare a second clock read, only where
a success needs no time of its own; a time window counts a success in the slice of its
end, as the engine does, so a slow success is not dropped from the window early.
"""

from __future__ import annotations

import pytest

from opero import Breaker, OperoError, opero
from opero.testing import FakeClock


def test_a_slow_success_counts_in_a_time_window_at_its_end(clock: FakeClock) -> None:
    # The success starts at 0 and ends at 9.5; the failure ends at 10.5.  Counted at its
    # end, the success is still in the 10-s window then: 1 failure of 2 calls opens it.
    # Counted at its start (slice 0, gone by 10.5), one call is below minimum_calls.
    @opero(
        retries=0,
        arg_fallback="key",
        candidate_breaker=Breaker(
            failure_threshold=None, failure_ratio=0.5, window_seconds=10, minimum_calls=2
        ),
    )
    def fetch(fail: bool, key: list[str] = ["k"]) -> bool:  # noqa: B006 - the key pool
        clock.advance(1.0 if fail else 9.5)
        if fail:
            raise ConnectionError("upstream down")
        return True

    assert fetch(False) is True
    with pytest.raises(OperoError):
        fetch(True)
    (candidate,) = fetch.statistics().candidates
    assert (candidate.calls, candidate.failures) == (2, 1)
    assert candidate.state == "open"
