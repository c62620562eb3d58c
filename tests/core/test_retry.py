"""RetryPolicy: backoff bounds, jitter, tenacity wait strategies and validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
import tenacity
from hypothesis import given, settings
from hypothesis import strategies as st

from opero import AllFailedError, ConfigurationError, opero
from opero.core.retry import RetryPolicy
from opero.testing import FakeClock


class AlwaysFails:
    """A callable that raises ConnectionError every time and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        raise ConnectionError(f"failure {self.calls}")


# --- the backoff formula ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_delay", "factor", "max_delay", "expected"),
    [
        (0.1, 1.5, 30.0, [0.1, 0.15, 0.225, 0.3375, 0.50625]),
        (1.0, 2.0, 5.0, [1.0, 2.0, 4.0, 5.0, 5.0]),
        (2.0, 1.0, 10.0, [2.0, 2.0, 2.0, 2.0, 2.0]),
        (0.0, 3.0, 1.0, [0.0, 0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_bound_follows_the_documented_formula(
    min_delay: float, factor: float, max_delay: float, expected: list[float]
) -> None:
    policy = RetryPolicy(min_delay=min_delay, backoff_factor=factor, max_delay=max_delay)
    bounds = [policy.bound(k) for k in range(1, 6)]
    assert bounds == pytest.approx(expected)
    assert bounds == pytest.approx(
        [min(max_delay, min_delay * factor ** (k - 1)) for k in range(1, 6)]
    )
    assert [policy.delay(k) for k in range(1, 6)] == bounds  # no jitter by default


@pytest.mark.parametrize("attempt", [1025, 10_000, 10**6, 10**20])
def test_huge_attempt_returns_max_delay_without_overflow(attempt: int) -> None:
    policy = RetryPolicy(min_delay=0.5, backoff_factor=2, max_delay=30)
    assert policy.bound(attempt) == 30.0
    assert policy.delay(attempt) == 30.0


def test_zero_min_delay_stays_zero_for_huge_attempts() -> None:
    policy = RetryPolicy(min_delay=0, backoff_factor=2, max_delay=30)
    assert policy.bound(2000) == 0.0


def test_jitter_stays_within_the_bound_and_varies() -> None:
    policy = RetryPolicy(min_delay=1, backoff_factor=2, max_delay=10, jitter=True)
    for attempt in range(1, 8):
        bound = policy.bound(attempt)
        samples = [policy.delay(attempt) for _ in range(50)]
        assert all(0.0 <= delay <= bound for delay in samples)
        assert len(set(samples)) > 1  # actually random, not the bound every time


def test_max_attempts_is_retries_plus_one() -> None:
    assert RetryPolicy(retries=0).max_attempts == 1
    assert RetryPolicy(retries=3).max_attempts == 4


# --- tenacity wait strategies -----------------------------------------------------------


def test_tenacity_wait_fixed_is_used() -> None:
    policy = RetryPolicy(wait=tenacity.wait_fixed(2))
    assert [policy.delay(k) for k in (1, 2, 5)] == [2.0, 2.0, 2.0]


def test_tenacity_wait_exponential_through_the_decorator() -> None:
    with FakeClock() as clock:
        target = AlwaysFails()
        wrapped = opero(retries=5, wait=tenacity.wait_exponential(multiplier=1, max=10))(target)
        with pytest.raises(AllFailedError) as info:
            wrapped()
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert target.calls == 6
    assert info.value.attempt_count == 6


def test_tenacity_wait_combination_sees_the_attempt_number() -> None:
    with FakeClock() as clock:
        wait = tenacity.wait_fixed(1) + tenacity.wait_incrementing(start=0, increment=3)
        wrapped = opero(retries=3, wait=wait)(AlwaysFails())
        with pytest.raises(AllFailedError):
            wrapped()
    assert clock.sleeps == [1.0, 4.0, 7.0]


@pytest.mark.parametrize(
    "changed",
    [{"backoff_factor": 2}, {"min_delay": 1}, {"max_delay": 5}, {"jitter": True}],
)
def test_wait_with_backoff_settings_is_a_configuration_error(changed: dict[str, Any]) -> None:
    (name,) = changed
    with pytest.raises(ConfigurationError, match=name):
        opero(wait=tenacity.wait_fixed(1), **changed)


# --- through the decorator --------------------------------------------------------------


def test_capped_backoff_through_the_decorator() -> None:
    with FakeClock() as clock:
        target = AlwaysFails()
        wrapped = opero(retries=3, min_delay=1, backoff_factor=2, max_delay=3)(target)
        with pytest.raises(AllFailedError):
            wrapped()
    assert clock.sleeps == [1.0, 2.0, 3.0]
    assert target.calls == 4
    assert clock.now() == 6.0


def test_jittered_backoff_through_the_decorator_stays_within_bounds() -> None:
    with FakeClock() as clock:
        wrapped = opero(retries=4, min_delay=1, backoff_factor=2, max_delay=5, jitter=True)(
            AlwaysFails()
        )
        with pytest.raises(AllFailedError):
            wrapped()
    assert len(clock.sleeps) == 4
    assert all(0.0 <= s <= b for s, b in zip(clock.sleeps, [1, 2, 4, 5], strict=True))


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"retries": "3"}, "retries"),
        ({"min_delay": -0.1}, "min_delay"),
        ({"min_delay": math.nan}, "min_delay"),
        ({"min_delay": math.inf}, "min_delay"),
        ({"min_delay": True}, "min_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"min_delay": 5, "max_delay": 1}, "max_delay"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"backoff_factor": 0}, "backoff_factor"),
        ({"backoff_factor": math.nan}, "backoff_factor"),
        ({"backoff_factor": math.inf}, "backoff_factor"),
        ({"backoff_factor": True}, "backoff_factor"),
        ({"jitter": 1}, "jitter"),
        ({"jitter": "yes"}, "jitter"),
        ({"wait": 2.0}, "wait"),
        ({"retry_on": ValueError("not a class")}, "retry_on"),
        ({"retry_on": int}, "retry_on"),
        ({"retry_on": ()}, "retry_on"),
        ({"retry_on": (ValueError, "KeyError")}, "retry_on"),
    ],
)
def test_bad_values_raise_configuration_error_naming_the_parameter(
    kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ConfigurationError, match=name):
        RetryPolicy(**kwargs)
    with pytest.raises(ConfigurationError, match=name):
        opero(**kwargs)  # the decorator checks before it is applied


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)


def test_accepted_edge_values() -> None:
    policy = RetryPolicy(retries=0, min_delay=0, max_delay=0, backoff_factor=1)
    assert policy.bound(1) == 0.0
    assert RetryPolicy(retry_on=(KeyError, ValueError)).retry_on == (KeyError, ValueError)
    assert RetryPolicy(retry_on=KeyError).retry_on == (KeyError,)


# --- invariants ---------------------------------------------------------------------------

delays = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(deadline=None, max_examples=300)
@given(
    min_delay=delays,
    extra=delays,
    factor=st.floats(min_value=1, max_value=100, allow_nan=False, allow_infinity=False),
    attempt=st.integers(min_value=1, max_value=5000),
    jitter=st.booleans(),
)
def test_delays_stay_within_bounds(
    min_delay: float, extra: float, factor: float, attempt: int, jitter: bool
) -> None:
    max_delay = min_delay + extra
    policy = RetryPolicy(
        min_delay=min_delay, max_delay=max_delay, backoff_factor=factor, jitter=jitter
    )
    bound = policy.bound(attempt)
    assert 0.0 <= bound <= max_delay
    assert policy.bound(attempt + 1) >= bound  # never shrinks
    assert policy.bound(1) == min_delay
    delay = policy.delay(attempt)
    assert 0.0 <= delay <= max_delay
    if jitter:
        assert delay <= bound
    else:
        assert delay == bound
