"""The breaker's settings and its state machine, each rule on explicit times (no clock read)."""

from __future__ import annotations

import math
import pickle
import sys
import threading
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import opero
from opero import Breaker, CircuitOpenError, ConfigurationError
from opero.core.breaker import State
from opero.core.breaker_state import BreakerState
from opero.core.breaker_window import SLICES

# --- settings -------------------------------------------------------------------------------


def test_defaults_are_a_count_window_of_20() -> None:
    config = Breaker()
    assert (config.failure_threshold, config.failure_ratio) == (5, 0.5)
    assert (config.window_calls, config.window_seconds, config.minimum_calls) == (20, None, 10)
    assert (config.cooldown, config.max_cooldown, config.half_open_calls) == (30.0, 300.0, 1)
    assert config.should_trip is None
    assert Breaker(window_seconds=60).window_calls is None
    assert Breaker(cooldown=900).max_cooldown == 900.0
    assert opero.Breaker is Breaker


@pytest.mark.parametrize(
    ("settings_", "named"),
    [
        ({"failure_ratio": 0}, "Breaker.failure_ratio"),
        ({"failure_ratio": 1.5}, "Breaker.failure_ratio"),
        ({"failure_ratio": math.nan}, "Breaker.failure_ratio"),
        ({"failure_threshold": 0}, "Breaker.failure_threshold"),
        ({"failure_threshold": True}, "Breaker.failure_threshold"),
        ({"failure_threshold": None, "failure_ratio": None}, "failure_threshold or failure_ratio"),
        ({"window_calls": 10, "window_seconds": 5}, "not both"),
        ({"window_calls": 0}, "Breaker.window_calls"),
        ({"window_seconds": 0}, "Breaker.window_seconds"),
        ({"minimum_calls": 0}, "Breaker.minimum_calls"),
        ({"cooldown": 0}, "Breaker.cooldown"),
        ({"cooldown": "30"}, "Breaker.cooldown"),
        ({"cooldown": 10, "max_cooldown": 5}, "Breaker.max_cooldown"),
        ({"half_open_calls": 0}, "Breaker.half_open_calls"),
        ({"should_trip": 3}, "Breaker.should_trip"),
    ],
)
def test_bad_settings_name_the_field(settings_: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Breaker(**settings_)


def test_breaker_is_frozen_and_compares_by_value() -> None:
    config = Breaker(cooldown=5)
    with pytest.raises(AttributeError):
        config.cooldown = 1  # type: ignore[misc]
    assert config == Breaker(cooldown=5)
    assert hash(config) == hash(Breaker(cooldown=5))
    assert pickle.loads(pickle.dumps(config)) == config


def test_from_setting() -> None:
    config = Breaker(cooldown=7)
    assert Breaker.from_setting(True) == Breaker()
    assert Breaker.from_setting(config) is config
    assert Breaker.from_setting(None) is None
    assert Breaker.from_setting(False) is None
    with pytest.raises(ConfigurationError, match="circuit_breaker must be True, False, None"):
        Breaker.from_setting("yes", "circuit_breaker")


def test_should_trip_decides_failure_or_success() -> None:
    # Applied by the caller to a routed error: True is a failure, False a success.
    assert Breaker().counts_as_failure(ValueError())
    auth = Breaker(should_trip=lambda error: isinstance(error, PermissionError))
    assert auth.counts_as_failure(PermissionError())
    assert not auth.counts_as_failure(TimeoutError())


# --- the state rules ------------------------------------------------------------------------


def machine(**settings_: Any) -> BreakerState:
    return BreakerState(Breaker(**settings_))


def feed(state: BreakerState, outcomes: str, start: float = 0.0) -> list[State | None]:
    """Record one outcome a second: ``F`` a failure, ``S`` a success."""
    return [state.record(start + k, failed=c == "F") for k, c in enumerate(outcomes)]


def test_consecutive_failures_open() -> None:
    state = machine(failure_threshold=3, failure_ratio=None)
    assert feed(state, "FFSFF") == [None] * 5
    assert state.state(5.0) == "closed"
    assert state.record(5.0, failed=True) == "open"
    assert state.acquire(6.0) is False


def test_ratio_opens_only_with_minimum_calls() -> None:
    state = machine(failure_threshold=None, window_calls=10, minimum_calls=4)
    # 2 of 3 failed: the ratio is above 0.5, but 3 calls are below the minimum.
    assert feed(state, "FSF") == [None] * 3
    # The 4th call reaches the minimum at 2/4 = 0.5 and opens, on a success (resilience4j).
    assert state.record(3.0, failed=False) == "open"


def test_below_the_minimum_never_opens() -> None:
    state = machine(failure_threshold=None, failure_ratio=0.1, window_calls=50, minimum_calls=5)
    assert feed(state, "FFFF") == [None] * 4
    assert state.state(4.0) == "closed"


def test_the_minimum_is_capped_at_the_window() -> None:
    state = machine(failure_threshold=None, window_calls=2, minimum_calls=10)
    assert feed(state, "SF") == [None, "open"]


def test_the_count_window_slides() -> None:
    state = machine(failure_threshold=None, failure_ratio=0.75, window_calls=4, minimum_calls=4)
    # 3 of all 7 failed (under 0.75), but 3 of the last 4 did.
    assert feed(state, "SSSSFFF") == [None] * 6 + ["open"]


def test_the_time_window_forgets_old_outcomes() -> None:
    fresh = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    assert fresh.record(0.0, failed=True) is None
    assert fresh.record(9.0, failed=False) == "open"  # 1 of 2 within 10 s
    state = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    assert state.record(0.0, failed=True) is None
    assert state.record(20.0, failed=False) is None  # the failure has left the window
    assert state.record(21.0, failed=True) == "open"


def test_an_outcome_leaves_the_time_window_between_nine_and_ten_tenths() -> None:
    # Slices of a tenth: an outcome at 0.95 is in the slice [0, 1), which leaves at 10.0.
    assert SLICES == 10
    kept = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    kept.record(0.95, failed=True)
    assert kept.record(9.99, failed=False) == "open"
    gone = machine(failure_threshold=None, window_seconds=10, minimum_calls=2)
    gone.record(0.95, failed=True)
    assert gone.record(10.0, failed=False) is None  # 9.05 s later: within one slice of 10


def opened_at(state: BreakerState, now: float) -> float:
    """Fail a probe at ``now`` (after the cooldown); return when it reopens."""
    assert state.acquire(now)
    assert state.record(now, failed=True) == "open"
    reopens = state.reopens_at(now)
    assert reopens is not None
    return reopens


def test_the_cooldown_doubles_to_the_maximum_and_resets_on_close() -> None:
    state = machine(failure_threshold=1, cooldown=10, max_cooldown=35)
    assert state.record(0.0, failed=True) == "open"
    assert state.reopens_at(0.0) == 10.0
    assert state.state(9.99) == "open"
    assert state.state(10.0) == "half_open"
    assert opened_at(state, 10.0) == 30.0  # 20 s
    assert opened_at(state, 30.0) == 65.0  # 40 s, capped at 35
    assert opened_at(state, 65.0) == 100.0
    assert state.acquire(100.0)
    assert state.record(100.0, failed=False) == "closed"
    assert state.reopens_at(100.0) is None
    assert state.record(101.0, failed=True) == "open"
    assert state.reopens_at(101.0) == 111.0  # back to 10 s


def test_half_open_lets_through_half_open_calls_and_closes_after_as_many_successes() -> None:
    state = machine(failure_threshold=1, cooldown=1, half_open_calls=2)
    state.record(0.0, failed=True)
    assert [state.acquire(1.0) for _ in range(3)] == [True, True, False]
    assert state.record(1.5, failed=False) is None  # one of two probes succeeded
    assert state.state(1.5) == "half_open"
    assert state.acquire(1.5) is False  # one in flight + one done = 2
    assert state.record(1.6, failed=False) == "closed"
    assert state.acquire(1.6) is True


def test_a_probe_failure_reopens_even_after_a_success() -> None:
    state = machine(failure_threshold=1, cooldown=1, half_open_calls=2)
    state.record(0.0, failed=True)
    assert state.acquire(1.0)
    assert state.acquire(1.0)
    assert state.record(1.1, failed=False) is None
    assert state.record(1.2, failed=True) == "open"
    assert state.reopens_at(1.2) == pytest.approx(3.2)


def test_closing_starts_a_fresh_window() -> None:
    state = machine(failure_threshold=None, window_calls=4, minimum_calls=4, cooldown=1)
    assert feed(state, "FFSS")[-1] == "open"
    assert state.acquire(5.0)
    assert state.record(5.0, failed=False) == "closed"
    # The old window [F, F, S, S] plus a failure would be 2 of 4; the new one holds 1 call.
    assert feed(state, "FSS", start=6.0) == [None] * 3


def test_release_gives_back_a_probe_permit_and_never_goes_negative() -> None:
    state = machine(failure_threshold=1, cooldown=1)
    state.release(0.0)  # closed: nothing to give back
    state.record(0.0, failed=True)
    assert state.acquire(1.0) is True
    assert state.acquire(1.0) is False
    for _ in range(3):
        state.release(1.0)
    assert [state.acquire(1.0) for _ in range(2)] == [True, False]


def test_late_outcomes_while_open_change_nothing() -> None:
    state = machine(failure_threshold=1, cooldown=10)
    state.record(0.0, failed=True)
    assert state.record(1.0, failed=True) is None
    assert state.record(2.0, failed=False) is None
    assert state.reopens_at(5.0) == 10.0


def test_every_transition_is_reported_once() -> None:
    seen: list[tuple[State, State]] = []
    state = BreakerState(
        Breaker(failure_threshold=1, cooldown=1), on_change=lambda *c: seen.append(c)
    )
    state.record(0.0, failed=True)
    state.acquire(0.5)  # refused: no change
    state.acquire(1.0)
    state.record(1.0, failed=True)
    state.acquire(3.0)
    state.record(3.0, failed=False)
    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


# --- threads --------------------------------------------------------------------------------


@pytest.fixture
def switchy() -> Iterator[None]:
    """Threads switch every microsecond, so a missing lock shows as a race in a short run."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def probe(state: BreakerState, barrier: threading.Barrier, now: float, out: list[bool]) -> None:
    barrier.wait()
    out.append(state.acquire(now))


@pytest.mark.parametrize("half_open_calls", [1, 3])
@pytest.mark.usefixtures("switchy")
def test_half_open_never_lets_more_than_its_probes_through(half_open_calls: int) -> None:
    threads = 16
    for round_ in range(20):
        state = machine(failure_threshold=1, cooldown=1, half_open_calls=half_open_calls)
        state.record(float(round_), failed=True)
        barrier = threading.Barrier(threads)
        granted: list[bool] = []
        workers = [
            threading.Thread(target=probe, args=(state, barrier, round_ + 1.0, granted))
            for _ in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert granted.count(True) == half_open_calls


@pytest.mark.usefixtures("switchy")
def test_many_threads_keep_the_permit_counts_whole() -> None:
    state = machine(failure_threshold=2, cooldown=0.001, max_cooldown=0.002, half_open_calls=2)
    barrier = threading.Barrier(8)
    ticks = iter(range(10**9))  # one shared, increasing time: next() is atomic

    def work(seed: int) -> None:
        barrier.wait()
        for k in range(3000):
            now = next(ticks) * 0.0005
            if state.acquire(now):
                choice = (seed * 31 + k * 7) % 5
                if choice == 0:
                    state.release(now)
                else:
                    state.record(now, failed=choice < 3)

    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Whatever state the run ended in, the half-open counts are within their bounds...
    assert 0 <= state._probes_out <= 2
    assert 0 <= state._probes_ok < 2
    # ...and a fresh half-open episode hands out exactly half_open_calls permits.
    state.record(10**6, failed=True)
    state.record(10**6, failed=True)
    assert state.state(10**6 + 1) == "half_open"
    assert [state.acquire(10**6 + 1) for _ in range(3)] == [True, True, False]


# --- against a reference model --------------------------------------------------------------


class Model:
    """The rules as plainly as they can be written: every outcome kept, windows recounted."""

    def __init__(self, config: Breaker) -> None:
        self.c = config
        self.state: State = "closed"
        self.history: list[tuple[float, bool]] = []  # outcomes since the last close
        self.streak = self.opens = self.out = self.ok = 0
        self.until = 0.0

    def ratio_reached(self, now: float) -> bool:
        c = self.c
        if c.failure_ratio is None:
            return False
        if c.window_seconds is not None:
            width = c.window_seconds / SLICES
            latest = max(math.floor(t / width) for t, _ in self.history)
            kept = [f for t, f in self.history if math.floor(t / width) > latest - SLICES]
            minimum = c.minimum_calls
        else:
            assert c.window_calls is not None
            kept = [f for _, f in self.history[-c.window_calls :]]
            minimum = min(c.minimum_calls, c.window_calls)
        return len(kept) >= minimum and sum(kept) / len(kept) >= c.failure_ratio

    def open(self, now: float) -> None:
        self.opens += 1
        cooldown = min(self.c.max_cooldown, self.c.cooldown * 2 ** (self.opens - 1))
        self.state, self.until, self.streak = "open", now + cooldown, 0

    def acquire(self, now: float) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open":
            if now < self.until:
                return False
            self.state, self.out, self.ok = "half_open", 0, 0
        if self.out + self.ok < self.c.half_open_calls:
            self.out += 1
            return True
        return False

    def record(self, now: float, failed: bool) -> State | None:
        before = self.state
        if before == "closed":
            self.history.append((now, failed))
            self.streak = self.streak + 1 if failed else 0
            threshold = self.c.failure_threshold
            if (threshold is not None and self.streak >= threshold) or self.ratio_reached(now):
                self.open(now)
        elif before == "half_open":
            self.out = max(0, self.out - 1)
            if failed:
                self.open(now)
            else:
                self.ok += 1
                if self.ok >= self.c.half_open_calls:
                    self.state, self.opens, self.history = "closed", 0, []
        return self.state if self.state != before else None

    def release(self, now: float) -> None:
        if self.state == "half_open":
            self.out = max(0, self.out - 1)


configs = st.builds(
    lambda threshold, ratio, window, minimum, cooldown, half_open: Breaker(
        failure_threshold=threshold,
        failure_ratio=0.5 if ratio is None and threshold is None else ratio,
        window_calls=window if isinstance(window, int) else None,
        window_seconds=window if isinstance(window, float) else None,
        minimum_calls=minimum,
        cooldown=cooldown,
        max_cooldown=cooldown * 5,
        half_open_calls=half_open,
    ),
    st.one_of(st.none(), st.integers(1, 4)),
    st.sampled_from([0.25, 0.5, 0.6, 1.0, None]),
    st.one_of(st.integers(1, 6), st.sampled_from([2.0, 5.0])),
    st.integers(1, 5),
    st.sampled_from([0.5, 1.0, 3.0]),
    st.integers(1, 3),
)
#: Each step: what happens, and the seconds since the step before.
steps = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "ok", "fail", "release", "ok", "fail"]),
        st.sampled_from([0, 0, 0.1, 0.7, 2.5, 9.0]),
    ),
    min_size=5,
    max_size=150,
)


@settings(max_examples=600, deadline=None)
@given(configs, steps)
def test_the_state_machine_matches_the_model(config: Breaker, ops: list[tuple[str, float]]) -> None:
    state, model = BreakerState(config), Model(config)
    now = 0.0
    for op, gap in ops:
        now += gap
        if op == "acquire":
            assert state.acquire(now) == model.acquire(now)
        elif op == "release":
            state.release(now)
            model.release(now)
        else:
            assert state.record(now, op == "fail") == model.record(now, op == "fail")
        assert state.state(now) == (
            "half_open" if model.state == "open" and now >= model.until else model.state
        )
        expected = model.until if model.state == "open" and now < model.until else None
        assert state.reopens_at(now) == expected


# --- CircuitOpenError -----------------------------------------------------------------------


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_circuit_open_error_pickles_with_what_it_carries(dumps: Any) -> None:
    error = CircuitOpenError(
        "3 candidates open", candidates=[0, 2, 1], retry_in=2.5, reopens_at=1_767_225_602.5
    )
    copy = pickle.loads(dumps(error))
    assert type(copy) is CircuitOpenError
    assert (copy.candidates, copy.retry_in, copy.reopens_at) == ((0, 2, 1), 2.5, 1_767_225_602.5)
    assert str(copy) == "3 candidates open"
    assert isinstance(copy, opero.OperoError)
