"""Ctrl-C, ``sys.exit``, a closed generator and cancellation are never retried or wrapped.

Even ``retry_on=BaseException`` must not turn them into an ``AllFailedError``,
which an ``except Exception`` would then swallow.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from opero import opero
from opero.testing import FakeClock
from shells import Shell

INTERRUPTS = [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]
PATIENCE = 5.0


class Abort(BaseException):
    """A user's own BaseException: retry_on=BaseException does retry this one."""


@pytest.mark.parametrize("interrupt", INTERRUPTS, ids=lambda c: c.__name__)
def test_interrupts_propagate_after_one_call(
    shell: Shell, clock: FakeClock, interrupt: type[BaseException]
) -> None:
    runs: list[int] = []

    def body() -> None:
        runs.append(1)
        raise interrupt

    failures: list[BaseException] = []
    wrapped = opero(retries=3, retry_on=BaseException, on_failure=failures.append)(shell.fn(body))
    with pytest.raises(interrupt) as info:
        shell.call(wrapped)
    assert type(info.value) is interrupt  # unwrapped
    assert runs == [1]
    assert clock.sleeps == []
    assert failures == []
    stats = wrapped.statistics()
    assert (stats.attempts, stats.retries, stats.failures) == (1, 0, 0)


@pytest.mark.parametrize("interrupt", INTERRUPTS, ids=lambda c: c.__name__)
def test_interrupts_during_a_retry_propagate_unwrapped(
    shell: Shell, clock: FakeClock, interrupt: type[BaseException]
) -> None:
    outcomes: list[BaseException] = [ConnectionError("down"), interrupt()]

    def body(key: list[str] = ["a", "b"]) -> None:  # noqa: B006 - the documented style
        raise outcomes.pop(0)

    wrapped = opero(retries=3, retry_on=BaseException, arg_fallback="key")(shell.fn(body))
    with pytest.raises(interrupt):
        shell.call(wrapped)
    assert outcomes == []
    assert wrapped.statistics().attempts == 2


def test_other_base_exceptions_are_retried_when_asked(shell: Shell, clock: FakeClock) -> None:
    runs: list[int] = []

    def body() -> str:
        runs.append(1)
        if len(runs) < 3:
            raise Abort
        return "ok"

    wrapped = opero(retries=3, retry_on=BaseException)(shell.fn(body))
    assert shell.call(wrapped) == "ok"
    assert runs == [1, 1, 1]


def test_a_leader_interrupted_hands_the_key_to_its_waiters() -> None:
    # Ctrl-C in the thread computing a key must not be raised in the threads waiting for it.
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    @opero(cache=True)
    def fetch(key: str) -> str:
        runs.append(threading.current_thread().name)
        if len(runs) == 1:
            started.set()
            release.wait(PATIENCE)
            raise KeyboardInterrupt
        return "value"

    leader_outcome: list[BaseException] = []

    def lead() -> None:
        try:
            fetch("k")
        except BaseException as exc:
            leader_outcome.append(exc)

    results: list[object] = []

    def wait() -> None:
        try:
            results.append(fetch("k"))
        except BaseException as exc:
            results.append(exc)

    leader = threading.Thread(target=lead, name="leader")
    leader.start()
    assert started.wait(PATIENCE)
    waiter = threading.Thread(target=wait, name="waiter")
    waiter.start()
    flights = fetch.__opero__.flights
    for _ in range(5000):
        flight = flights.table.current(("k",))
        if flight is not None and flight.done._cond._waiters:
            break
        threading.Event().wait(0.001)
    release.set()
    leader.join(PATIENCE)
    waiter.join(PATIENCE)
    assert [type(e) for e in leader_outcome] == [KeyboardInterrupt]
    assert results == ["value"]
    assert runs == ["leader", "waiter"]
