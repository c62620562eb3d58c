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

No clock is read here, but by ``success(None)`` (see ``BreakerState.success``): every
method takes ``now`` (seconds, any monotonic scale), so one object serves a thread
pool, a fake clock in tests and a map's parent, and is the model for a script that
keeps the same state in redis.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import final

from opero.core import clock, forksafe
from opero.core.breaker import CLOSED, DEFAULT_WINDOW_CALLS, HALF_OPEN, OPEN, Breaker, State
from opero.core.breaker_window import FAILED, CountWindow, TimeWindow

__all__ = ["BreakerState", "OnChange"]

#: ``on_change(old, new)``: called after each transition, outside the lock.
OnChange = Callable[[State, State], None]


@final
class BreakerState:
    """One breaker's live state; every method takes the time (``success`` may read it).

    Thread-safe: each transition happens under a fork-safe lock.  ``acquire`` in the
    closed state reads one attribute and takes no lock (resilience4j's closed state
    is one atomic read too); a call that slips through as another thread opens the
    breaker is recorded as a late outcome and changes nothing.  ``success`` is bound
    to what a success needs in the current state: where it cannot open the breaker
    (closed, and a count window holding ``minimum_calls`` outcomes, or no window),
    the ``append`` of the deque the outcomes go to, so the success path of a key pool
    is one C call with no lock and no Python frame.

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
        "_outcomes",
        "_probes_ok",
        "_probes_out",
        "_state",
        "_threshold",
        "_window",
        "config",
        "success",
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
        self._window: CountWindow | TimeWindow | None = None
        self._outcomes: deque[object] = deque()
        #: ``success(now)``: count one success; returns the new state if it changed.
        #: ``now`` may be None where the caller has not read the clock (the key pool's
        #: fast path): the time is then read only where the success needs it.
        self.success: Callable[[float | None], State | None] = self._success
        self._fresh_window()

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
        return self._locked(now, failed=True) if failed else self.success(now)

    def _success(self, now: float | None) -> State | None:
        # ``success`` where a success may change the state (see _bind); the one place
        # here that reads opero's clock, for a caller that did not.
        return self._locked(clock.now() if now is None else now, failed=False)

    def _locked(self, now: float, *, failed: bool) -> State | None:
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
        outcomes, window = self._outcomes, self._window
        if failed:
            # Any other entry last is a success (the lock-free path appends without
            # resetting the streak): this failure starts a new streak.
            last_failed = bool(outcomes) and outcomes[-1] is FAILED
            self._consecutive = (self._consecutive if last_failed else 0) + 1
        if type(window) is CountWindow:
            reached = window.add(now, failed)  # its ring is the outcomes
        else:
            outcomes.append(FAILED if failed else None)
            reached = window is not None and window.add(now, failed)
        if reached or (failed and self._consecutive == self._threshold):
            self._open(now)
            return True
        self._bind()  # a count window may just have reached minimum_calls
        return False

    def _bind(self) -> None:
        # Under the lock: ``success`` for the current state.  Closed with a count window
        # that holds minimum_calls outcomes, or with none, a success changes nothing but
        # the outcomes (a streak is ended by the failure after it, see _closed_outcome):
        # their deque's append.  Otherwise the locked path.
        window = self._window
        lock_free = self._state is CLOSED and (
            window is None or (type(window) is CountWindow and window.settled())
        )
        self.success = self._outcomes.append if lock_free else self._success

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
        self._bind()

    def _close(self) -> None:
        self._state = CLOSED
        self._opens = 0
        self._consecutive = 0
        self._probes_out = self._probes_ok = 0
        self._fresh_window()

    def _fresh_window(self) -> None:
        # A closed state's window, and the deque its outcomes go to: a count window's
        # ring, else one entry (the last outcome, which says whether a streak goes on).
        window = self._window = _new_window(self.config)
        self._outcomes = window.ring if type(window) is CountWindow else deque(maxlen=1)
        self._bind()


def _new_window(config: Breaker) -> CountWindow | TimeWindow | None:
    ratio = config.failure_ratio
    if ratio is None:
        return None
    if config.window_seconds is not None:
        return TimeWindow(config.window_seconds, ratio, config.minimum_calls)
    size = config.window_calls or DEFAULT_WINDOW_CALLS
    return CountWindow(size, ratio, min(config.minimum_calls, size))
