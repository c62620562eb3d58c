"""Key pools (issue 14): the success path's cost, throughput, and a key that always fails.

Run:  python bench/key_pools.py              (needs: pip install -e ".[bench]")
      python bench/key_pools.py overhead     (only those: overhead, throughput, failing)
      python bench/key_pools.py --cpu-time   (rounds timed in CPU time)

* overhead: ``candidate_breaker=True`` with 3 healthy keys next to a plain call and to
  ``@opero(arg_fallback=...)`` without a breaker, side by side in one process (sync and
  async; best of many rounds, taking turns, as ``bench/overhead.py`` measures), and the
  same function kept in the engine (``retry_if_result``) to show what the fast path saves.
* throughput: 3 keys at ``candidate_rate_limit=10`` for 10 simulated seconds on
  ``opero.testing.FakeClock``, from 8 threads (in lockstep: a sleeping thread wakes
  once all the others sleep and its time is the earliest) and from ``asyncio.gather``:
  calls per simulated second, and the most calls one key started in any 1-s window.
* failing: a key that always fails, among two healthy ones, one call every 0.1 s for
  100 simulated seconds: the calls it gets in each cooldown period next to
  ``failure_threshold + half_open_calls``, and the others' success rate.

Targets are checked and printed as PASS/FAIL (exit code 1 if one is missed).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import overhead
from measure import Checks
from overhead import per_call_async_table, per_call_table

from opero import Breaker, OperoError, opero
from opero.testing import FakeClock, use_clock

KEYS = ["key-a", "key-b", "key-c"]
NUMBER = 200_000


def plain(x: int, key: list[str] = KEYS) -> int:
    return x


async def aplain(x: int, key: list[str] = KEYS) -> int:
    return x


def never(result: object) -> bool:
    """Accepts every result: keeps the twin in the engine."""
    return False


def contenders(func: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    """The decorated variants of ``func`` the overhead tables compare."""
    return {
        "@opero(arg_fallback)": opero(arg_fallback="key")(func),
        "+ candidate_breaker=True": opero(arg_fallback="key", candidate_breaker=True)(func),
        "+ round_robin": opero(
            arg_fallback="key", candidate_breaker=True, fallback_strategy="round_robin"
        )(func),
        "+ candidate_rate_limit=1e9": opero(arg_fallback="key", candidate_rate_limit=1e9)(func),
        "breaker, kept in the engine": opero(
            arg_fallback="key", candidate_breaker=True, retry_if_result=never
        )(func),
    }


def report_overhead(check: Checks) -> None:
    sync = {"plain call": plain, **contenders(plain)}
    times = per_call_table(
        {
            name: ((lambda f=f: f(1)), NUMBER // (10 if "engine" in name else 1))
            for name, f in sync.items()
        }
    )
    _overhead_table("sync success path, 3 healthy keys", times, "plain call")
    asy = {"plain await": aplain, **contenders(aplain)}
    atimes = per_call_async_table(
        {
            name: ((lambda f=f: f(1)), NUMBER // (40 if "engine" in name else 4))
            for name, f in asy.items()
        }
    )
    _overhead_table("\nasync success path, 3 healthy keys", atimes, "plain await")
    over = times["+ candidate_breaker=True"] - times["plain call"]
    check(f"candidate_breaker=True overhead {over * 1e6:.3f} µs <= 1.0 µs", over <= 1.0e-6)


def _overhead_table(title: str, times: dict[str, float], base_name: str) -> None:
    base, fallback = times[base_name], times["@opero(arg_fallback)"]
    print(f"{title:44s} per call   over plain   over arg_fallback")
    for name, t in times.items():
        cost = f"{(t - base) * 1e6:8.3f} µs {(t - fallback) * 1e6:8.3f} µs"
        print(f"  {name:40s} {t * 1e6:8.3f} µs {cost}")


class Lockstep:
    """A clock for a fixed set of threads on a FakeClock's virtual time.

    A `FakeClock` alone moves on by each sleep in turn, so concurrent sleeps would add
    up; here a sleeping thread wakes once every other thread sleeps (or is done) and its
    wake-up time is the earliest, the clock moved to it.
    """

    def __init__(self, fake: FakeClock, workers: int) -> None:
        self.fake, self.running = fake, workers
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
        with self.turn:
            self.running -= 1
            self._wake()

    def _wake(self) -> None:
        if self.running or not self.due:
            return
        first = min(self.due, key=self.due.__getitem__)
        target = self.due.pop(first)
        if target > self.fake.now():
            self.fake.advance(target - self.fake.now())
        self.running += 1
        self.turn.notify_all()


def busiest_second(starts: list[float]) -> int:
    """The most calls that started in any 1-s window (a window opening at each start)."""
    starts = sorted(starts)
    return max(sum(1 for t in starts[i:] if t < start + 1.0) for i, start in enumerate(starts))


def keyed(now: Callable[[], float], starts: dict[str, list[float]], *, is_async: bool) -> Any:
    settings: dict[str, Any] = {"arg_fallback": "key", "candidate_rate_limit": 10}
    settings["candidate_breaker"] = True
    lock = threading.Lock()

    def fetch(key: list[str] = KEYS) -> str:
        with lock:
            starts[key[0]].append(now())
        return key[0]

    async def afetch(key: list[str] = KEYS) -> str:
        return fetch(key)

    return opero(**settings)(afetch if is_async else fetch)


def from_threads() -> dict[str, list[float]]:
    fake = FakeClock(start=1000.0)
    clock = Lockstep(fake, 8)
    starts: dict[str, list[float]] = {key: [] for key in KEYS}
    fetch = keyed(clock.now, starts, is_async=False)

    def worker() -> None:
        try:
            while clock.now() < 1010.0:
                fetch()
        finally:
            clock.done()

    with use_clock(clock):
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return starts


def from_gather() -> dict[str, list[float]]:
    starts: dict[str, list[float]] = {key: [] for key in KEYS}
    with FakeClock(start=1000.0) as clock:
        fetch = keyed(clock.now, starts, is_async=True)

        async def main() -> None:
            await asyncio.gather(*(fetch() for _ in range(300)))

        asyncio.run(main())
    return starts


def report_throughput(check: Checks) -> None:
    print("\nthroughput: 3 keys at candidate_rate_limit=10, FakeClock, 10 simulated s")
    for name, run in (("8 threads", from_threads), ("asyncio.gather", from_gather)):
        began = time.perf_counter()
        starts = run()
        took = time.perf_counter() - began
        inside = [t for times in starts.values() for t in times if t < 1010.0]
        rate = len(inside) / 10.0
        busiest = max(busiest_second(times) for times in starts.values())
        print(
            f"  {name:16s} {rate:6.1f} calls/s; busiest key {busiest} in a 1-s window "
            f"({took:.2f} s real)"
        )
        check(f"{name}: {rate:.1f} calls/s >= 28.5", rate >= 28.5)
        check(f"{name}: no key above 10 in any 1-s window ({busiest})", busiest <= 10)


def failing_run(breaker: Breaker, keys: list[str]) -> tuple[list[float], float]:
    """One call every 0.1 s for 100 s; the failing key's call times, the others' success rate."""
    bad: list[float] = []
    answered = 0
    with FakeClock(start=0.0) as clock:

        @opero(
            arg_fallback="key", fallback_on=PermissionError, retries=0, candidate_breaker=breaker
        )
        def fetch(key: list[str] = keys) -> str:
            if key[0] == KEYS[0]:
                bad.append(clock.now())
                raise PermissionError("revoked")
            return key[0]

        for _ in range(1000):
            try:
                fetch()
                answered += 1
            except OperoError:  # alone: AllFailedError, then CircuitOpenError while open
                pass
            clock.advance(0.1)
    return bad, answered / 1000


def report_failing(check: Checks) -> None:
    print("\na key that always fails: a call every 0.1 s for 100 simulated s")
    fixed = Breaker(failure_threshold=5, failure_ratio=None, cooldown=10, max_cooldown=10)
    for name, breaker, keys in (
        ("2 healthy keys, cooldown 10 s", fixed, KEYS),
        ("2 healthy keys, Breaker()", Breaker(), KEYS),
        ("alone, cooldown 10 s", fixed, KEYS[:1]),
    ):
        bad, ok = failing_run(breaker, keys)
        limit = (breaker.failure_threshold or 0) + breaker.half_open_calls
        cooldown = breaker.cooldown
        periods = [
            sum(1 for t in bad if k * cooldown <= t < (k + 1) * cooldown)
            for k in range(int(100 // cooldown))
        ]
        others = f"the others' success rate {ok:.0%}" if len(keys) > 1 else "no other key"
        print(
            f"  {name:30s} {len(bad):3d} calls to it; most in one {cooldown:g}-s period "
            f"{max(periods)} (threshold + half_open_calls = {limit}); {others}"
        )
        check(f"{name}: at most {limit} calls per cooldown period", max(periods) <= limit)
        if len(keys) > 1:
            check(f"{name}: the other keys succeed 100 %", ok == 1.0)


SECTIONS: dict[str, Callable[[Checks], None]] = {
    "overhead": report_overhead,
    "throughput": report_throughput,
    "failing": report_failing,
}


def main(only: list[str]) -> int:
    if "--cpu-time" in only:
        only = [name for name in only if name != "--cpu-time"]
        overhead.TIMER = time.process_time
    unknown = set(only) - set(SECTIONS)
    if unknown:
        print(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    check = Checks()
    clock = "CPU time" if overhead.TIMER is time.process_time else "wall time"
    print(
        f"python {sys.version.split()[0]}; best of {overhead.ROUNDS} rounds ({clock}), per call\n"
    )
    for name, report in SECTIONS.items():
        if not only or name in only:
            report(check)
    print("\nall targets met" if check.ok else "\nsome targets missed")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
