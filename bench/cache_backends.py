"""Hit and miss cost of each cache backend, side by side with the bare libraries.

Run:  python bench/cache_backends.py      (needs: pip install -e ".[disk,redis,bench]"
                                           and a redis-server on 127.0.0.1:6379)

Compares an ``@opero(cache=True, cache_backend=...)`` hit with
``diskcache.Cache.memoize`` (disk) and with a bare redis-py ``GET`` plus
``pickle.loads`` of the same value (redis); prints PASS/FAIL for the targets:
disk hit <= 1.2x diskcache's memoize hit, redis hit <= 1.3x GET + unpickle.
"""

from __future__ import annotations

import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache
import redis

from opero import opero

VALUE = {"user": 42, "name": "Ada", "roles": ["admin", "dev"], "score": 3.5}
REPEAT = 9


def per_call(fn: Callable[[], Any], number: int) -> float:
    """Median over REPEAT runs of the seconds per call (median: disks are noisy)."""
    runs = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs)


def interleaved(fns: dict[str, Callable[[], Any]], number: int) -> dict[str, float]:
    """Per-call times measured in alternation, so load changes hit every contender alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(REPEAT):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(values) for name, values in samples.items()}


def disk_hits(folder: Path) -> dict[str, float]:
    store = diskcache.Cache(str(folder / "bare"))

    @store.memoize()
    def memoized(x: int) -> dict[str, Any]:
        return VALUE

    @opero(cache=True, cache_backend="disk", cache_backend_config={"directory": str(folder / "o")})
    def disk(x: int) -> dict[str, Any]:
        return VALUE

    @opero(
        cache=True, cache_backend="sqlite", cache_backend_config={"directory": str(folder / "s")}
    )
    def sqlite(x: int) -> dict[str, Any]:
        return VALUE

    for fn in (memoized, disk, sqlite):
        fn(1)
    times = interleaved(
        {
            "diskcache.memoize hit": lambda: memoized(1),
            "opero disk hit": lambda: disk(1),
            "opero sqlite hit": lambda: sqlite(1),
        },
        2000,
    )
    counter = iter(range(10**9))
    times["opero disk miss (compute + store)"] = per_call(lambda: disk(next(counter)), 300)
    times["opero sqlite miss (compute + store)"] = per_call(lambda: sqlite(next(counter)), 300)
    store.close()
    return times


def redis_hits() -> dict[str, float]:
    client = redis.Redis(host="127.0.0.1", port=6379, db=15)
    client.set("bench:bare", pickle.dumps(VALUE, protocol=pickle.HIGHEST_PROTOCOL))

    @opero(cache=True, cache_backend="redis", cache_backend_config={"host": "127.0.0.1", "db": 15})
    def shared(x: int) -> dict[str, Any]:
        return VALUE

    shared(1)
    times = interleaved(
        {
            "redis GET + pickle.loads": lambda: pickle.loads(client.get("bench:bare")),  # type: ignore[arg-type]
            "opero redis hit": lambda: shared(1),
        },
        2000,
    )
    counter = iter(range(10**9))
    times["opero redis miss (compute + store)"] = per_call(lambda: shared(next(counter)), 500)
    shared.cache_clear()
    client.delete("bench:bare")
    client.close()
    return times


def main() -> int:
    ok = True

    def check(label: str, passed: bool) -> None:
        nonlocal ok
        ok &= passed
        print(f"  [{'PASS' if passed else 'FAIL'}] {label}")

    with tempfile.TemporaryDirectory() as tmp:
        disk = disk_hits(Path(tmp))
    print("disk and sqlite (median per call)")
    for name, t in disk.items():
        print(f"  {name:40s} {t * 1e6:9.1f} µs")
    ratio = disk["opero disk hit"] / disk["diskcache.memoize hit"]
    check(f"disk hit is {ratio:.2f}x diskcache's memoize hit (target <= 1.2x)", ratio <= 1.2)

    shared = redis_hits()
    print("\nredis on 127.0.0.1 (median per call)")
    for name, t in shared.items():
        print(f"  {name:40s} {t * 1e6:9.1f} µs")
    ratio = shared["opero redis hit"] / shared["redis GET + pickle.loads"]
    check(f"redis hit is {ratio:.2f}x a bare GET + unpickle (target <= 1.3x)", ratio <= 1.3)
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
