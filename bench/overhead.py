"""Per-call cost of opero next to its peers, side by side in one process.

Run:  python bench/overhead.py        (needs: pip install -e ".[bench]")

Prints the success-path overhead of ``@opero()`` and ``@opero(retries=3,
arg_fallback=...)`` over a plain call, next to tenacity, backoff and stamina,
sync and async; a memory-cache hit next to ``functools.lru_cache`` and
``cachetools.cached(TTLCache)``; and the rate limiter's accuracy at 40 calls/s
from one thread and from eight.  Targets are checked and printed as PASS/FAIL.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

import backoff
import cachetools
import stamina
import tenacity

from opero import opero

NUMBER = 200_000
REPEAT = 7


def per_call(stmt: Callable[[], Any], number: int = NUMBER) -> float:
    """Best-of-REPEAT seconds per call of ``stmt``."""
    timer = timeit.Timer(stmt)
    return min(timer.repeat(repeat=REPEAT, number=number)) / number


def per_call_async(make: Callable[[], Any], number: int = NUMBER // 4) -> float:
    """Best-of-REPEAT seconds per awaited call, measured inside one running loop."""

    async def run() -> float:
        best = float("inf")
        for _ in range(REPEAT):
            start = time.perf_counter()
            for _ in range(number):
                await make()
            best = min(best, time.perf_counter() - start)
        return best / number

    return asyncio.run(run())


def plain(x: int, key: list[str] | None = None) -> int:
    return x


async def aplain(x: int, key: list[str] | None = None) -> int:
    return x


def sync_table() -> dict[str, float]:
    opero_default = opero()(plain)
    opero_fallback = opero(retries=3, arg_fallback="key")(plain)
    tenacity_fn = tenacity.retry(stop=tenacity.stop_after_attempt(4))(plain)
    backoff_fn = backoff.on_exception(backoff.expo, Exception, max_tries=4)(plain)
    stamina_fn = stamina.retry(on=Exception, attempts=4)(plain)
    keys = ["a", "b"]
    return {
        "plain call": per_call(lambda: plain(1)),
        "@opero()": per_call(lambda: opero_default(1)),
        "@opero(retries=3, arg_fallback)": per_call(lambda: opero_fallback(1, keys)),
        "tenacity.retry": per_call(lambda: tenacity_fn(1), NUMBER // 10),
        "backoff.on_exception": per_call(lambda: backoff_fn(1), NUMBER // 4),
        "stamina.retry": per_call(lambda: stamina_fn(1), NUMBER // 4),
    }


def async_table() -> dict[str, float]:
    opero_default = opero()(aplain)
    opero_fallback = opero(retries=3, arg_fallback="key")(aplain)
    tenacity_fn = tenacity.retry(stop=tenacity.stop_after_attempt(4))(aplain)
    backoff_fn = backoff.on_exception(backoff.expo, Exception, max_tries=4)(aplain)
    stamina_fn = stamina.retry(on=Exception, attempts=4)(aplain)
    keys = ["a", "b"]
    return {
        "plain await": per_call_async(lambda: aplain(1)),
        "@opero()": per_call_async(lambda: opero_default(1)),
        "@opero(retries=3, arg_fallback)": per_call_async(lambda: opero_fallback(1, keys)),
        "tenacity.retry": per_call_async(lambda: tenacity_fn(1), NUMBER // 40),
        "backoff.on_exception": per_call_async(lambda: backoff_fn(1), NUMBER // 16),
        "stamina.retry": per_call_async(lambda: stamina_fn(1), NUMBER // 16),
    }


def cache_table() -> dict[str, float]:
    def square(x: int) -> int:
        return x * x

    lru = functools.lru_cache(maxsize=4096)(square)
    ttl = cachetools.cached(cachetools.TTLCache(maxsize=4096, ttl=300))(square)
    ttl_locked = cachetools.cached(
        cachetools.TTLCache(maxsize=4096, ttl=300), lock=threading.Lock()
    )(square)
    opero_hit = opero(cache=True, cache_ttl=300)(square)
    for fn in (lru, ttl, ttl_locked, opero_hit):
        fn(7)
    return {
        "functools.lru_cache hit": per_call(lambda: lru(7)),
        "cachetools TTLCache hit": per_call(lambda: ttl(7)),
        "cachetools TTLCache hit (with lock)": per_call(lambda: ttl_locked(7)),
        "@opero(cache=True, cache_ttl=300) hit": per_call(lambda: opero_hit(7)),
    }


def rate_runs(calls: int = 60, rate: float = 40.0) -> dict[str, float]:
    ideal = (calls - 1) / rate

    @opero(rate_limit=rate)
    def one_thread(i: int) -> int:
        return i

    start = time.perf_counter()
    for i in range(calls):
        one_thread(i)
    single = time.perf_counter() - start

    @opero(rate_limit=rate)
    def many_threads(i: int) -> int:
        return i

    counter = iter(range(calls))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            many_threads(i)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eight = time.perf_counter() - start
    return {"ideal": ideal, "1 thread": single, "8 threads": eight}


def main() -> int:
    ok = True

    def check(label: str, passed: bool) -> None:
        nonlocal ok
        ok &= passed
        print(f"  [{'PASS' if passed else 'FAIL'}] {label}")

    print(f"python {sys.version.split()[0]}; times are best of {REPEAT}, per call\n")
    sync = sync_table()
    base = sync["plain call"]
    print("sync success path                        per call   overhead")
    for name, t in sync.items():
        print(f"  {name:36s} {t * 1e6:8.3f} µs {(t - base) * 1e6:8.3f} µs")
    over = sync["@opero()"] - base
    ten = sync["tenacity.retry"] - base
    check(f"@opero() overhead {over * 1e6:.3f} µs <= 1.0 µs", over <= 1.0e-6)
    check(
        f"@opero() overhead is 1/{ten / over:.0f} of tenacity's (target <= 1/20)", over * 20 <= ten
    )

    asy = async_table()
    abase = asy["plain await"]
    print("\nasync success path                       per call   overhead")
    for name, t in asy.items():
        print(f"  {name:36s} {t * 1e6:8.3f} µs {(t - abase) * 1e6:8.3f} µs")
    aover = asy["@opero()"] - abase
    aten = asy["tenacity.retry"] - abase
    check(
        f"async @opero() overhead is 1/{aten / aover:.0f} of tenacity's (target <= 1/10)",
        aover * 10 <= aten,
    )

    cache = cache_table()
    print("\nmemory-cache hit                         per call")
    for name, t in cache.items():
        print(f"  {name:36s} {t * 1e6:8.3f} µs")
    hit = cache["@opero(cache=True, cache_ttl=300) hit"]
    check(
        f"opero hit {hit * 1e6:.3f} µs <= cachetools TTLCache hit "
        f"{cache['cachetools TTLCache hit'] * 1e6:.3f} µs",
        hit <= cache["cachetools TTLCache hit"],
    )

    runs = [rate_runs() for _ in range(3)]
    print("\nrate limit: 60 calls at 40/s (ideal 1.475 s), 3 runs")
    for key in ("1 thread", "8 threads"):
        values = [r[key] for r in runs]
        med = statistics.median(values)
        print(f"  {key:10s} " + "  ".join(f"{v:.3f} s" for v in values) + f"   median {med:.3f} s")
        check(f"{key}: within 5% of 1.475 s", abs(med - 1.475) <= 0.05 * 1.475)
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
