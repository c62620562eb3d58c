"""``@opmap(mode="dask")`` next to plain ``distributed`` on a local 2-worker cluster.

Run:  python bench/dask.py        (needs: pip install -e ".[dask]")

Starts a ``LocalCluster`` of 2 worker processes with 1 thread each and prints:
20,000 trivial items through ``opmap(mode="dask")`` next to ``client.map`` +
``client.gather`` with one task per item (the way a map is usually written
with ``distributed``); and 32 CPU-bound items of ~50 ms each through
``opmap(mode="dask")`` next to running them serially in this process (with
``client.map`` as a reference for what the cluster allows right now).  The
CPU-bound items run first and ``burn`` is calibrated before the cluster
starts: the scheduler stays busy for a while after 20,000 ``client.map`` tasks.

``client.map`` over 20,000 items takes tens of seconds here (the scheduler
handles 20,000 tasks), so it runs once, after a warm-up on a few items;
opmap runs several times and its median is used.  For the CPU-bound items
the contenders are interleaved, and the speedup is the median of the ratios
of runs made back to back in the same round (as in ``bench/opmap.py``).
The targets are printed as PASS/FAIL; the exit code is 1 if one is missed.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# This file is named dask.py: with its directory first on sys.path (as `python bench/dask.py`
# puts it), `import dask` inside distributed would import this file.  Drop the directory.
# Worker processes re-import this file with the parent's sys.path, where the directory is
# already gone: put it back just for `measure`, then drop it again.
_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from measure import Checks, calibrate, interleaved, paired, table, timed  # noqa: E402

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

ITEMS = 20_000
WORKERS = 2
FAST_REPEAT = 5
CPU_ITEMS = 32
CPU_SECONDS = 0.050
CPU_REPEAT = 7
TARGET_VS_CLIENT_MAP = 10.0
TARGET_CPU_SPEEDUP = 1.6


# -- work functions --------------------------------------------------------------------------
def double(x: int) -> int:
    return x * 2


def burn(n: int) -> int:
    """A pure-Python loop; ``n`` is calibrated at startup to take about CPU_SECONDS."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


# -- the two benchmarks --------------------------------------------------------------------------
def trivial_bench(client: Any, opmap: Any) -> dict[str, list[float]]:
    items = list(range(ITEMS))
    expected = [double(x) for x in items]
    mapped = opmap(mode="dask", client=client, progress=False)(double)

    def with_client_map() -> list[int]:
        futures = client.map(double, items)
        try:
            return client.gather(futures)  # type: ignore[no-any-return]
        finally:
            client.cancel(futures)
            del futures

    # Warm: the function known to the workers, connections open, modules loaded.
    assert mapped(items) == expected
    assert client.gather(client.map(double, items[:100])) == expected[:100]
    times: dict[str, list[float]] = {"opmap(mode='dask')": [], "client.map + gather": []}
    for _ in range(FAST_REPEAT):
        times["opmap(mode='dask')"].append(timed(lambda: mapped(items)))
    print(f"  (client.map over {ITEMS:,} items: one run, this takes a while...)", flush=True)
    start = time.perf_counter()
    result = with_client_map()
    times["client.map + gather"].append(time.perf_counter() - start)
    assert result == expected
    return table(
        f"{ITEMS:,} trivial items, {WORKERS} workers x 1 thread "
        f"(opmap: median of {FAST_REPEAT}; client.map: 1 run)",
        times,
        ITEMS,
    )


def cpu_bench(client: Any, opmap: Any, n: int) -> dict[str, list[float]]:
    one = statistics.median(timed(functools.partial(burn, n)) for _ in range(5))
    work = [n] * CPU_ITEMS
    mapped = opmap(mode="dask", client=client, progress=False)(burn)
    expected = burn(n)

    def with_client_map() -> list[int]:
        futures = client.map(burn, work, pure=False)
        try:
            return client.gather(futures)  # type: ignore[no-any-return]
        finally:
            client.cancel(futures)
            del futures

    assert mapped(work[:WORKERS]) == [expected] * WORKERS  # workers warm
    assert with_client_map() == [expected] * CPU_ITEMS
    times = interleaved(
        {
            "opmap(mode='dask')": lambda: mapped(work),
            "client.map + gather (reference)": with_client_map,
            "serial loop": lambda: [burn(n) for n in work],
        },
        CPU_REPEAT,
    )
    title = f"CPU-bound: {CPU_ITEMS} items of {one * 1e3:.1f} ms (burn({n:,})), {WORKERS} workers"
    return table(title, times, CPU_ITEMS)


def main() -> int:
    import logging  # noqa: PLC0415

    from distributed import Client, LocalCluster  # noqa: PLC0415

    from opero import opmap  # noqa: PLC0415

    check = Checks()

    load = os.getloadavg()[0]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f}; "
        f"LocalCluster: {WORKERS} worker processes x 1 thread"
    )
    if load > 0.5:
        print("  note: the machine is busy; the multi-process figures will be noisy")
    # Calibrated before the cluster starts: its processes would slow the loop down.
    n = calibrate(burn, CPU_SECONDS)
    cluster = LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # any free port
        silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    try:
        # CPU-bound first: after 20,000 client.map tasks the scheduler keeps busy for a while.
        c = cpu_bench(client, opmap, n)
        speedup = paired(c, "serial loop", "opmap(mode='dask')")
        reference = paired(c, "serial loop", "client.map + gather (reference)")
        print(f"  (client.map's speedup on this cluster right now: {reference:.2f}x)")
        check(
            f"CPU-bound speedup {speedup:.2f}x over serial on {WORKERS} workers "
            f"(target >= {TARGET_CPU_SPEEDUP}x)",
            speedup >= TARGET_CPU_SPEEDUP,
        )

        t = trivial_bench(client, opmap)
        ratio = t["client.map + gather"][0] / statistics.median(t["opmap(mode='dask')"])
        check(
            f"trivial items: opmap {ratio:.0f}x client.map's throughput "
            f"(target >= {TARGET_VS_CLIENT_MAP:.0f}x)",
            ratio >= TARGET_VS_CLIENT_MAP,
        )
    finally:
        client.close()
        cluster.close()

    print("\nall targets met" if check.ok else "\nsome targets missed")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
