"""``Breaker``: the settings of a circuit breaker, frozen and checked when built.

``candidate_breaker=Breaker(...)`` gives each ``arg_fallback`` candidate a breaker
of its own, ``circuit_breaker=Breaker(...)`` gives one to a whole function; ``True``
means ``Breaker()``.  The names follow resilience4j's ``CircuitBreakerConfig`` where
it has the setting (a failure ratio over a COUNT_BASED or TIME_BASED sliding window
with a minimum number of calls, a wait in the open state that an exponential interval
function stretches, a number of calls permitted in the half-open state); the states
themselves are in `opero.core.breaker_state`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, final

from opero.core import validate
from opero.core.breaker_window import MAX_WINDOW_CALLS
from opero.core.frozen import Frozen
from opero.exceptions import ConfigurationError

__all__ = ["CLOSED", "DEFAULT_WINDOW_CALLS", "HALF_OPEN", "OPEN", "Breaker", "State"]

State = Literal["closed", "open", "half_open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

#: The window when neither ``window_calls`` nor ``window_seconds`` is given.
DEFAULT_WINDOW_CALLS: Final = 20
#: ``max_cooldown`` when none is given: five minutes, or ``cooldown`` if that is longer.
DEFAULT_MAX_COOLDOWN: Final = 300.0


@final
class Breaker(Frozen):
    """How a circuit breaker opens, rests and closes again (frozen and validated).

    Args:
        failure_threshold: open after this many failures in a row (None: no such rule).
        failure_ratio: open when failures / calls over the window reaches this, in
            (0, 1] (None: no such rule).  At least one of the two rules is needed.
        window_calls: the window is the last N calls (resilience4j's COUNT_BASED).
        window_seconds: the window is the last N seconds (TIME_BASED).  Give one of the
            two, not both; with neither, the last 20 calls.
        minimum_calls: calls the window must hold before the ratio counts (capped at
            ``window_calls``, as resilience4j caps it).
        cooldown: seconds an open breaker refuses calls; it doubles each time the
            breaker opens again without having closed, up to ``max_cooldown``.
        max_cooldown: the longest cooldown (default: 300 s, or ``cooldown`` if longer).
        half_open_calls: probe calls let through after the cooldown; that many
            successes close the breaker, one failure opens it again.
        should_trip: ``should_trip(error) -> bool``, asked by the caller about each
            error a call ended with that opero routed (``fallback_on``/``retry_on``):
            True counts it as a failure, False as a success (the candidate answered;
            resilience4j's ``recordFailurePredicate``).  Errors that propagate
            unwrapped count as neither.  None: every routed error is a failure.

    Examples:
        >>> Breaker(failure_threshold=3, cooldown=10).max_cooldown
        300.0
        >>> Breaker(window_calls=10, window_seconds=60)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        opero.exceptions.ConfigurationError: Breaker takes window_calls (...) or ... not both; ...
    """

    __slots__ = (
        "cooldown",
        "failure_ratio",
        "failure_threshold",
        "half_open_calls",
        "max_cooldown",
        "minimum_calls",
        "should_trip",
        "window_calls",
        "window_seconds",
    )
    cooldown: float
    failure_ratio: float | None
    failure_threshold: int | None
    half_open_calls: int
    max_cooldown: float
    minimum_calls: int
    should_trip: Callable[[BaseException], bool] | None
    window_calls: int | None
    window_seconds: float | None

    def __init__(
        self,
        *,
        failure_threshold: int | None = 5,
        failure_ratio: float | None = 0.5,
        window_calls: int | None = None,
        window_seconds: float | None = None,
        minimum_calls: int = 10,
        cooldown: float = 30.0,
        max_cooldown: float | None = None,
        half_open_calls: int = 1,
        should_trip: Callable[[BaseException], bool] | None = None,
    ) -> None:
        if failure_threshold is not None:
            validate.integer("Breaker.failure_threshold", failure_threshold, hint=", or None")
        if failure_ratio is not None:
            failure_ratio = validate.number(
                "Breaker.failure_ratio",
                failure_ratio,
                exclusive=True,
                maximum=1.0,
                kind="a ratio of failures to calls",
                hint=", or None",
            )
        if failure_threshold is None and failure_ratio is None:
            msg = "Breaker needs failure_threshold or failure_ratio (both None could never open)"
            raise ConfigurationError(msg)
        window_calls, window_seconds = _window(window_calls, window_seconds)
        validate.integer("Breaker.minimum_calls", minimum_calls)
        cooldown = validate.number("Breaker.cooldown", cooldown, exclusive=True)
        if max_cooldown is None:
            max_cooldown = max(DEFAULT_MAX_COOLDOWN, cooldown)
        else:
            max_cooldown = validate.number(
                "Breaker.max_cooldown", max_cooldown, minimum=cooldown, hint=" (the cooldown)"
            )
        validate.integer("Breaker.half_open_calls", half_open_calls)
        validate.function("Breaker.should_trip", should_trip, "should_trip(error) -> bool")
        self._init(
            failure_threshold=failure_threshold,
            failure_ratio=failure_ratio,
            window_calls=window_calls,
            window_seconds=window_seconds,
            minimum_calls=minimum_calls,
            cooldown=cooldown,
            max_cooldown=max_cooldown,
            half_open_calls=half_open_calls,
            should_trip=should_trip,
        )

    @classmethod
    def from_setting(cls, setting: object, name: str = "candidate_breaker") -> Breaker | None:
        """``True``: the defaults; a ``Breaker``: itself; ``None`` or ``False``: no breaker."""
        if setting is True:
            return cls()
        if setting is None or setting is False or isinstance(setting, Breaker):
            return setting or None
        msg = f"{name} must be True, False, None or a Breaker(...); got {validate.show(setting)}"
        raise ConfigurationError(msg)

    def counts_as_failure(self, error: BaseException) -> bool:
        """Whether a routed error is a failure (True) or a success (False) for the breaker."""
        return True if self.should_trip is None else bool(self.should_trip(error))


def _window(calls: int | None, seconds: float | None) -> tuple[int | None, float | None]:
    if calls is not None and seconds is not None:
        msg = (
            "Breaker takes window_calls (the last N calls) or window_seconds (the last N "
            f"seconds), not both; got window_calls={validate.show(calls)}, "
            f"window_seconds={validate.show(seconds)}"
        )
        raise ConfigurationError(msg)
    if seconds is not None:
        return None, validate.number("Breaker.window_seconds", seconds, exclusive=True)
    if calls is None:
        return DEFAULT_WINDOW_CALLS, None
    return (
        validate.integer("Breaker.window_calls", calls, maximum=MAX_WINDOW_CALLS, hint=", or None"),
        None,
    )
