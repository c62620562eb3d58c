"""A closed breaker's sliding windows: the last N calls, or the last N seconds.

Each ``add(now, failed)`` records one outcome and answers the ratio rule: True when
the window holds at least ``minimum`` calls and failures / calls has reached
``ratio`` (resilience4j's ``CircuitBreakerMetrics.checkIfThresholdsExceeded``).
Both hold a bounded amount of memory, however fast the calls come; the caller holds
the breaker's lock around ``add``.  A success can raise a time window's ratio (older
successes expire), so only a count window takes successes without the lock, and only
once it holds ``minimum`` outcomes.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, final

__all__ = ["FAILED", "MAX_WINDOW_CALLS", "SLICES", "CountWindow", "TimeWindow"]

#: A time window is kept as this many slices of ``window_seconds / SLICES`` each.
SLICES: Final = 10
#: The longest count window: a failure counts it (in C, some microseconds at most).
MAX_WINDOW_CALLS: Final = 10_000


#: What a count window holds for a failure; anything else it holds is a success (the
#: breaker's lock-free success path appends whatever it is given, see `CountWindow.ring`).
FAILED: Final = object()


@final
class CountWindow:
    """The last ``size`` outcomes (resilience4j's COUNT_BASED window).

    ``ring`` is the window itself, open so that a breaker's success path can append to
    it without a lock or a Python frame (``deque.append`` with a ``maxlen`` is one
    atomic C call): a failure is the `FAILED` marker, any other entry a success.  A
    success cannot raise the failure ratio of a count window; it can only bring the
    window up to ``minimum``, so only until then must a success be checked.  A failure
    counts the window under the breaker's lock, in C (``deque.count``, which compares
    by identity first; at most ``MAX_WINDOW_CALLS`` entries).

    Examples:
        >>> window = CountWindow(size=4, ratio=0.5, minimum=4)
        >>> [window.add(0.0, failed) for failed in (True, True, False, False, False)]
        [False, False, False, True, False]
    """

    __slots__ = ("_minimum", "_ratio", "ring")

    def __init__(self, size: int, ratio: float, minimum: int) -> None:
        #: The outcomes, oldest first: `FAILED` for a failure, anything else a success.
        self.ring: deque[object] = deque(maxlen=size)
        self._ratio = ratio
        self._minimum = minimum

    def add(self, now: float, failed: bool) -> bool:
        """Record one outcome, pushing out the oldest once full; has the ratio been reached?"""
        self.ring.append(FAILED if failed else None)
        return self.reached()

    def settled(self) -> bool:
        """Whether it holds ``minimum`` outcomes: no success can reach the ratio from here."""
        return len(self.ring) >= self._minimum

    def reached(self) -> bool:
        """Whether the window holds ``minimum`` calls and the failure ratio is reached."""
        ring = self.ring
        calls = len(ring)
        return calls >= self._minimum and ring.count(FAILED) / calls >= self._ratio


@final
class TimeWindow:
    """The outcomes of the last ``seconds``, in slices (resilience4j's TIME_BASED window).

    An outcome counts while its slice is one of the last ``SLICES``: it leaves the
    window between 0.9 and 1.0 ``seconds`` after it was recorded.  A time earlier
    than the newest slice (threads read the clock before taking the lock, so their
    times may arrive out of order) is counted in the newest slice.

    Examples:
        >>> window = TimeWindow(seconds=10.0, ratio=0.5, minimum=2)
        >>> window.add(0.0, True), window.add(5.0, False), window.add(12.0, True)
        (False, True, True)
        >>> window.add(25.0, False)
        False
    """

    __slots__ = ("_calls", "_failures", "_minimum", "_ratio", "_slices", "_width")

    def __init__(self, seconds: float, ratio: float, minimum: int) -> None:
        self._width = seconds / SLICES
        #: ``[slice number, calls, failures]``, oldest first.
        self._slices: deque[list[int]] = deque()
        self._calls = 0
        self._failures = 0
        self._ratio = ratio
        self._minimum = minimum

    def add(self, now: float, failed: bool) -> bool:
        """Record one outcome, dropping slices that have left the window; ratio reached?"""
        slices = self._slices
        number = math.floor(now / self._width)
        oldest = number - SLICES + 1
        while slices and slices[0][0] < oldest:
            _, calls, failures = slices.popleft()
            self._calls -= calls
            self._failures -= failures
        if slices and slices[-1][0] >= number:
            newest = slices[-1]
            newest[1] += 1
            newest[2] += failed
        else:
            slices.append([number, 1, int(failed)])
        self._calls += 1
        self._failures += failed
        return self._calls >= self._minimum and self._failures / self._calls >= self._ratio
