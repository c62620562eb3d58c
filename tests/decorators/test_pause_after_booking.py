"""A call that booked its rate slot before a server's Retry-After, and is still waiting for
it, does not start inside the pause (CONTRACT 28: no caller walks into the same 429).

Caller A takes the first slot and is refused 50 ms into its call; caller B booked the next
slot (t = 0.1) before that and waits for it.  The pause runs from 0.05 to 5.05 s, so B's
call starts at 5.05 s, not at 0.1 s inside the pause.  Fake clock, asyncio tasks.
"""

from __future__ import annotations

import asyncio

from opero import opero
from opero.testing import FakeClock


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("429 Too Many Requests")
        self.retry_after = retry_after


def test_a_slot_booked_before_the_pause_waits_for_its_end(clock: FakeClock) -> None:
    starts: list[tuple[str, float]] = []
    refused: list[float] = []

    @opero(rate_limit=10, retries=1, min_delay=0.0)
    async def call(who: str) -> str:
        starts.append((who, round(clock.now() - 1000.0, 3)))
        if who == "a" and not refused:
            await clock.async_sleep(0.05)  # virtual time, as the limiter sees it
            refused.append(clock.now())
            raise RateLimited(5)
        return who

    async def both() -> list[str]:
        return await asyncio.gather(call("a"), call("b"))

    assert asyncio.run(both()) == ["a", "b"]
    assert refused == [1000.05]
    b_start = next(t for who, t in starts if who == "b")
    assert b_start >= 5.05, starts  # it booked 0.1, but the server paused the scope until 5.05
    inside = [(who, t) for who, t in starts if 0.05 < t < 5.05]
    assert inside == [], starts
