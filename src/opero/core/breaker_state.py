"""The state machine of one circuit breaker: closed, open, half-open.

The states and their rules follow resilience4j's ``CircuitBreakerStateMachine``
(resilience4j-circuitbreaker, ``internal/CircuitBreakerStateMachine.java`` and
``CircuitBreakerMetrics.java``, read at commit af9e7c9, May 2026):

* **closed**: every call may go; each outcome is recorded, and after each one the
  rules are checked (on a success too: resilience4j's ``ClosedState.onSuccess``
  checks the thresholds, so reaching ``minimum_calls`` with a success can open it).
* **open**: calls are refused until the cooldown has passed; the next ``acquire``
  then moves to half-open (resilience4j's ``OpenState.tryAcquirePermission``, which
  also makes that move lazily, on the first call after the wait).  Outcomes of calls
  let through before the open are dropped (resilience4j records them in metrics no
  rule reads).
* **half-open**: ``half_open_calls`` permits; ``release`` gives one back
  (``HalfOpenState.releasePermission``).  The count of opens without a close in
  between picks the cooldown, as resilience4j's ``attempts`` feeds its exponential
  ``IntervalFunction``; closing resets it (a new ``ClosedState``: a fresh window,
  ``attempts() == 0``).

Two departures, both asked for by issue 14: resilience4j has no rule on consecutive
failures (``failure_threshold`` is Polly's basic breaker's), and its half-open state
waits for all probes and compares their failure rate with the threshold; here the
first failing probe reopens at once, and ``half_open_calls`` successes close.

No clock is read here: every method takes ``now`` (seconds, any monotonic scale), so
one object serves a thread pool, a fake clock in tests and a map's parent, and is the
model for a script that keeps the same state in redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import final

from opero.core import forksafe
from opero.core.breaker import CLOSED, DEFAULT_WINDOW_CALLS, HALF_OPEN, OPEN, Breaker, State
from opero.core.breaker_window import CountWindow, TimeWindow

__all__ = ["BreakerState", "OnChange"]

#: ``on_change(old, new)``: called after each transition, outside the lock.
OnChange = Callable[[State, State], None]


@final
class BreakerState:
    """One breaker's live state; every method takes the time, none reads a clock.

    Thread-safe: each transition happens under a fork-safe lock.  ``acquire`` in the
    closed state reads one attribute and takes no lock (resilience4j's closed state
    is one atomic read too); a call that slips through as another thread opens the
    breaker is recorded as a late outcome and changes nothing.

    Examples:
        >>> state = BreakerState(Breaker(failure_threshold=2, cooldown=10))
        >>> state.acquire(0.0), state.record(0.0, failed=True), state.record(1.0, failed=True)
        (True, None, 'open')
        >>> state.acquire(5.0), state.reopens_at(5.0), state.state(11.0)
        (False, 11.0, 'half_open')
        >>> state.acquire(11.0), state.acquire(11.0), state.record(12.0, failed=False)
        (True, False, 'closed')
    """

    __slots__ = (
        "_consecutive",
        "_cooldown",
        "_half_open",
        "_lock",
        "_max_cooldown",
        "_on_change",
        "_open_until",
        "_opens",
        "_probes_ok",
        "_probes_out",
        "_state",
        "_threshold",
        "_window",
        "config",
    )

    def __init__(self, config: Breaker, on_change: OnChange | None = None) -> None:
        #: The settings this state follows.
        self.config = config
        self._threshold = config.failure_threshold or 0
        self._cooldown = config.cooldown
        self._max_cooldown = config.max_cooldown
        self._half_open = config.half_open_calls
        self._on_change = on_change
        self._lock = forksafe.lock()
        # Always one of the three constants, so the hot path compares by identity.
        self._state: State = CLOSED
        self._consecutive = 0  # failures in a row while closed
        self._opens = 0  # opens since the last close: picks the cooldown
        self._open_until = 0.0
        self._probes_out = 0  # half-open permits handed out and not yet ended
        self._probes_ok = 0  # half-open probes that succeeded
        self._window: CountWindow | TimeWindow | None = _new_window(config)

    def acquire(self, now: float) -> bool:
        """May a call go now?  In half-open this takes one probe permit."""
        if self._state is CLOSED:
            return True
        with self._lock:
            old = self._state
            if old is OPEN:
                if now < self._open_until:
                    return False
                self._state = HALF_OPEN
                self._probes_out = self._probes_ok = 0
            elif old is CLOSED:
                return True
            permitted = self._probes_out + self._probes_ok < self._half_open
            if permitted:
                self._probes_out += 1
        if old is OPEN and self._on_change is not None:
            self._on_change(OPEN, HALF_OPEN)
        return permitted

    def record(self, now: float, failed: bool) -> State | None:
        """Count one call's outcome; return the new state if it changed, else None."""
        if not failed and self._state is CLOSED:
            # The success path takes no lock where it cannot open the breaker: the streak
            # is one store, a count window's append one C call (a success racing with a
            # failure may leave the streak one too long: at worst an open one call early).
            window = self._window
            if window is None:
                self._consecutive = 0
                return None
            if type(window) is CountWindow:
                self._consecutive = 0
                return self._check(now) if window.success() else None
        with self._lock:
            old = self._state
            if old is CLOSED:
                opened = self._closed_outcome(now, failed)
            elif old is HALF_OPEN:
                opened = self._probe_outcome(now, failed)
            else:
                return None  # late outcome of a call let through before the open
            if not opened:
                return None
            new = self._state
        if self._on_change is not None:
            self._on_change(old, new)
        return new

    def _closed_outcome(self, now: float, failed: bool) -> bool:
        # Under the lock: True if this outcome opens the breaker.
        self._consecutive = self._consecutive + 1 if failed else 0
        window = self._window
        if (window is not None and window.add(now, failed)) or (
            failed and self._consecutive == self._threshold
        ):
            self._open(now)
            return True
        return False

    def _probe_outcome(self, now: float, failed: bool) -> bool:
        # Under the lock: True if this probe's outcome changes the state.
        self._probes_out = max(0, self._probes_out - 1)
        if failed:
            self._open(now)
            return True
        self._probes_ok += 1
        if self._probes_ok < self._half_open:
            return False
        self._close()
        return True

    def _check(self, now: float) -> State | None:
        # A success filled a count window up to minimum_calls: does the ratio open it?
        with self._lock:
            window = self._window
            if self._state is not CLOSED or type(window) is not CountWindow or not window.reached():
                return None
            self._open(now)
        if self._on_change is not None:
            self._on_change(CLOSED, OPEN)
        return OPEN

    def release(self, now: float) -> None:
        """A call ended without an outcome to count: give back its half-open permit."""
        with self._lock:
            if self._state is HALF_OPEN and self._probes_out > 0:
                self._probes_out -= 1

    def state(self, now: float) -> State:
        """The state at ``now``: an open breaker whose cooldown has passed is half-open."""
        state = self._state
        if state is OPEN and now >= self._open_until:
            return HALF_OPEN
        return state

    def reopens_at(self, now: float) -> float | None:
        """When an open breaker lets a probe through; None when it is not waiting on time."""
        if self._state is OPEN and now < self._open_until:
            return self._open_until
        return None

    def _open(self, now: float) -> None:
        self._opens += 1
        # 2.0 ** 1023 is the largest power a float holds; a product past it is inf, never an error.
        delay = self._cooldown * 2.0 ** min(self._opens - 1, 1023)
        self._open_until = now + min(delay, self._max_cooldown)
        self._state = OPEN
        self._consecutive = 0

    def _close(self) -> None:
        self._state = CLOSED
        self._opens = 0
        self._consecutive = 0
        self._probes_out = self._probes_ok = 0
        self._window = _new_window(self.config)


def _new_window(config: Breaker) -> CountWindow | TimeWindow | None:
    ratio = config.failure_ratio
    if ratio is None:
        return None
    if config.window_seconds is not None:
        return TimeWindow(config.window_seconds, ratio, config.minimum_calls)
    size = config.window_calls or DEFAULT_WINDOW_CALLS
    return CountWindow(size, ratio, min(config.minimum_calls, size))
