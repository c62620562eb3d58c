"""What a per-attempt timeout adds to an async call that returns at once.

Run:  python bench/timeouts.py

Measures ``acall_within`` (opero's cut of an async attempt: one ``loop.call_later``
handle, the attempt's end in a context variable) around a coroutine that returns
without suspending, next to a plain ``await`` of it and to ``asyncio.wait_for`` and
``asyncio.timeout`` (3.11+) doing the same job.  Also the sync path, ``call_within``,
whose cost is a hand-over to a worker thread and back.  Rounds are interleaved and
each contender's figure is its best round (as ``timeit`` advises: slower rounds measure
the other load on the machine, not the code).  Target: the async cut costs at most
2 µs more than a plain await.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opero.core.timeouts import acall_within, call_within

NUMBER = 20_000
ROUNDS = 9
TARGET_ASYNC_EXTRA = 2e-6


async def answer(x: int) -> int:
    return x


def sync_answer(x: int) -> int:
    return x


async def per_call(make: Callable[[], Awaitable[Any]], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        await make()
    return (time.perf_counter() - start) / number


def async_contenders() -> dict[str, Callable[[], Awaitable[Any]]]:
    contenders: dict[str, Callable[[], Awaitable[Any]]] = {
        "plain await": lambda: answer(1),
        "acall_within(..., 10 s)": lambda: acall_within(answer, (1,), {}, 10.0),
        "asyncio.wait_for(..., 10 s)": lambda: asyncio.wait_for(answer(1), 10.0),
    }
    if sys.version_info >= (3, 11):

        async def with_timeout() -> int:
            async with asyncio.timeout(10.0):
                return await answer(1)

        contenders["async with asyncio.timeout(10 s)"] = with_timeout
    return contenders


async def measure_async() -> dict[str, list[float]]:
    contenders = async_contenders()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(ROUNDS):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(await per_call(contenders[name], NUMBER))
    return times


def measure_sync(number: int = 2_000) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(number):
            call_within(sync_answer, (1,), {}, 10.0)
        best = min(best, (time.perf_counter() - start) / number)
    return best


def main() -> int:
    times = asyncio.run(measure_async())
    plain = times["plain await"]
    print(f"async, a coroutine that returns at once ({ROUNDS} rounds x {NUMBER:,} calls)")
    print(f"  {'':36s} {'per call':>10s} {'added':>10s}")
    extras: dict[str, float] = {}
    for name, values in times.items():
        extra = min(values) - min(plain)
        extras[name] = extra
        shown = "" if name == "plain await" else f"{extra * 1e6:+8.2f}µs"
        print(f"  {name:36s} {min(values) * 1e6:8.2f}µs {shown:>10s}")
    sync = measure_sync()
    print("\nsync, a function that returns at once, on a worker thread")
    print(f"  {'call_within(..., 10 s)':36s} {sync * 1e6:8.2f}µs")
    extra = extras["acall_within(..., 10 s)"]
    passed = extra <= TARGET_ASYNC_EXTRA
    print(
        f"\n  [{'PASS' if passed else 'FAIL'}] acall_within adds {extra * 1e6:.2f}µs "
        f"(target <= {TARGET_ASYNC_EXTRA * 1e6:.0f}µs)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
