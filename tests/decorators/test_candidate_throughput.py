"""Three keys at ``candidate_rate_limit=10`` deliver their summed rate from 8 threads (issue 14).

The asyncio and sequential versions are in ``test_candidate_budgets.py``.  Threads need
virtual time that passes as it would for real: a `FakeClock` alone moves on by each
sleep in turn, so eight threads' concurrent waits would add up.  `Lockstep` drives a
FakeClock for a fixed set of threads: a sleeping thread wakes once every other thread
is asleep (or done) and its wake-up time is the earliest, the clock moved to it.  So
the throughput is measured in simulated seconds, exactly, on a loaded machine too.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from test_candidate_budgets import _busiest_second

from opero import opero
from opero.testing import FakeClock, use_clock

KEYS = ["sk-a", "sk-b", "sk-c"]
THREADS = 8


class Lockstep:
    """A clock for ``workers`` threads on a FakeClock's virtual time (see the module)."""

    def __init__(self, fake: FakeClock, workers: int) -> None:
        self.fake = fake
        self.running = workers
        self.due: dict[object, float] = {}
        self.turn = threading.Condition()

    def now(self) -> float:
        return self.fake.now()

    def sleep(self, seconds: float) -> None:
        me = object()
        with self.turn:
            self.due[me] = self.fake.now() + max(0.0, seconds)
            self.running -= 1
            self._wake()
            while me in self.due:
                self.turn.wait()

    def async_sleep(self, seconds: float) -> Awaitable[None]:
        raise NotImplementedError  # threads only

    def done(self) -> None:
        """A worker thread has finished."""
        with self.turn:
            self.running -= 1
            self._wake()

    def _wake(self) -> None:
        # Under the condition: once no thread runs, the earliest sleeper wakes at its time.
        if self.running or not self.due:
            return
        first = min(self.due, key=self.due.__getitem__)
        target = self.due.pop(first)
        if target > self.fake.now():
            self.fake.advance(target - self.fake.now())
        self.running += 1
        self.turn.notify_all()


def _run_threads(clock: Lockstep, work: Callable[[], None]) -> None:
    def worker() -> None:
        try:
            work()
        finally:
            clock.done()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


@pytest.mark.parametrize("strategy", ["ordered", "round_robin", "least_loaded"])
def test_three_keys_deliver_their_summed_rate_from_eight_threads(strategy: str) -> None:
    fake = FakeClock(start=1000.0)
    clock = Lockstep(fake, THREADS)
    starts: dict[str, list[float]] = {key: [] for key in KEYS}
    lock = threading.Lock()

    @opero(
        arg_fallback="key",
        candidate_rate_limit=10,
        candidate_breaker=True,
        fallback_strategy=strategy,
    )
    def fetch(key: list[str] = KEYS) -> str:
        with lock:
            starts[key[0]].append(clock.now())
        return key[0]

    began = fake.now()

    def work() -> None:
        for _ in range(60):  # 8 x 60 calls: more than 10 s hold, and a broken budget ends too
            if clock.now() >= began + 10.0:
                return
            fetch()

    with use_clock(clock):
        _run_threads(clock, work)
    inside = {key: [t for t in times if t < began + 10.0] for key, times in starts.items()}
    calls = sum(len(times) for times in inside.values())
    assert calls / 10.0 >= 28.5  # 0.95 x 3 keys x 10/s
    for times in starts.values():
        assert _busiest_second(times) <= 10  # its own rate, in every 1-s window
    stats: Any = fetch.statistics()
    assert stats.calls == sum(len(times) for times in starts.values())
    assert [c.calls for c in stats.candidates] == [len(starts[key]) for key in KEYS]
    assert sum(c.in_flight for c in stats.candidates) == 0
