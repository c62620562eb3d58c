"""The order one attempt tries the ``arg_fallback`` candidates in (the key pools).

Kept apart from the candidates' live state so each module stays short; nothing here
reads a clock: the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from opero.core.breaker import CLOSED, OPEN

if TYPE_CHECKING:
    from opero.core.breaker import State

__all__ = ["Health", "Strategy", "order"]

Strategy = Literal["ordered", "round_robin", "least_loaded"]


class Health(Protocol):
    """What :func:`order` reads about one candidate."""

    @property
    def in_flight(self) -> int:
        """Calls to it started and not yet ended."""
        ...

    def state(self, now: float) -> State:
        """``"closed"``, ``"open"`` or ``"half_open"`` (closed when it has no breaker)."""
        ...

    def resting(self, now: float) -> bool:
        """Whether a server asked this candidate to wait, and the wait is not over."""
        ...

    def next_slot(self, now: float) -> float:
        """When its budget lets the next call start (``now`` without a budget)."""
        ...


def order(
    strategy: Strategy, n: int, health: Sequence[Health], now: float, cursor: int = 0
) -> list[int]:
    """The candidate indexes one attempt tries, in order; open candidates left out.

    Args:
        strategy: ``"ordered"``, ``"round_robin"`` or ``"least_loaded"``.
        n: how many candidates this call has (``health`` holds at least ``n``).
        health: each candidate's health, by index.
        now: the time, on the clock the breakers and rests use.
        cursor: where the rotation starts (``Cursor.next()`` once per call); read
            by ``round_robin``, and by ``least_loaded`` for its ties.

    Examples:
        >>> from opero.core.breaker import Breaker
        >>> from opero.core.candidates import Candidate
        >>> pool = [Candidate(), Candidate(breaker=Breaker(failure_threshold=1)), Candidate()]
        >>> order("round_robin", 3, pool, now=0.0, cursor=1)
        [1, 2, 0]
        >>> pool[2].rest(now=0.0, seconds=10)
        >>> pool[1].breaker.record(0.0, failed=True)
        'open'
        >>> order("round_robin", 3, pool, now=0.0, cursor=1)
        [0, 2]
    """
    healthy: list[int] = []
    later: list[int] = []
    for index in range(n):
        candidate = health[index]
        state = candidate.state(now)
        if state == OPEN:
            continue
        if state == CLOSED and not candidate.resting(now):
            healthy.append(index)
        else:
            later.append(index)
    if strategy != "ordered":
        healthy, later = (
            _turn(strategy, healthy, health, now, cursor),
            _turn(strategy, later, health, now, cursor),
        )
    return healthy + later if later else healthy


def _turn(
    strategy: Strategy, indexes: list[int], health: Sequence[Health], now: float, cursor: int
) -> list[int]:
    # Rotated among the candidates of one tier, so skipping an open one does not hand
    # its turns to its neighbour; least_loaded then sorts, stably, keeping that rotation
    # among ties.
    if len(indexes) > 1:
        start = cursor % len(indexes)
        indexes = indexes[start:] + indexes[:start]
        if strategy == "least_loaded":
            indexes.sort(key=lambda i: (health[i].next_slot(now), health[i].in_flight))
    return indexes
