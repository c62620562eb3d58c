"""``@opmap`` throughput next to the standard pools and mpire, side by side in one process.

Run:  python bench/opmap.py        (needs: pip install -e ".[bench]")
      python bench/opmap.py thread process     (only those benchmarks: thread, process,
                                                cpu, async, progress)

Prints, with 2 workers: 20,000 trivial items in thread mode next to
``multiprocessing.pool.ThreadPool.map`` (the fair peer: it chunks as opmap
does; the two interleaved and paired) and ``ThreadPoolExecutor.map`` (one
future per item, for reference, timed on its own); the
same items in process mode next to a warm ``multiprocessing.Pool.map`` and a
warm ``mpire.WorkerPool.map``; 32 CPU-bound items of ~50 ms each in process
mode next to running them serially (with a warm ``Pool.map`` as a reference
for what the machine allows right now); 2,000 items sleeping 10 ms in async
mode (``workers=100``) next to the ideal 0.2 s (with bare ``asyncio.gather``
waves as the event loop's floor); and the cost of ``progress=True`` on 20,000
trivial items in thread mode.  The multi-process figures are only as steady as
the machine is idle: the header shows the load.

Every figure is the median of several runs, contenders interleaved; a ratio
is the median of the ratios of runs made back to back in the same round; the
targets are checked and printed as PASS/FAIL, and the exit code is 1 if one
is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.pool import ThreadPool
from typing import Any

from measure import Checks, calibrate, interleaved, paired, table, timed

ITEMS = 20_000
WORKERS = 2
REPEAT = 5
FAST_REPEAT = 15  # the trivial-item maps take milliseconds: more runs for a steadier median
#: The thread-mode pairs (opmap beside ThreadPool.map; progress on and off) take ~7 ms a
#: round and differ by a few percent, within one round's noise on a loaded machine: the
#: median of 41 paired rounds (~0.3 s) settles it.
THREAD_REPEAT = 41
CPU_ITEMS = 32
CPU_SECONDS = 0.050
CPU_REPEAT = 5
ASYNC_ITEMS = 2_000
ASYNC_WORKERS = 100
ASYNC_SLEEP = 0.01
START_METHOD = "forkserver"


# -- work functions (module level so every pool can pickle them by reference) -------------
def double(x: int) -> int:
    return x * 2


def burn(n: int) -> int:
    """A pure-Python loop; ``n`` is calibrated at startup to take about CPU_SECONDS."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


async def nap(x: int) -> int:
    await asyncio.sleep(ASYNC_SLEEP)
    return x


# -- the five benchmarks -----------------------------------------------------------------
def thread_bench(items: list[int], opmap: Any) -> dict[str, list[float]]:
    mapped = opmap(mode="thread", workers=WORKERS, progress=False)(double)
    executor = ThreadPoolExecutor(WORKERS)
    threads = ThreadPool(WORKERS)
    # Threads started, modules loaded; per-item errors are kept (one list entry each).
    assert mapped(items) == threads.map(double, items) == list(executor.map(double, items))
    try:
        # The two that chunk alike are interleaved and paired.  The one future per item
        # runs on its own: its ~1 s of thread churn and garbage landed right before
        # opmap in two rounds of three (the order rotates), and before ThreadPool in one.
        times = interleaved(
            {
                "opmap(mode='thread')": lambda: mapped(items),
                "multiprocessing ThreadPool(2).map": lambda: threads.map(double, items),
            },
            THREAD_REPEAT,
        )
        one_each = {"ThreadPoolExecutor(2).map": lambda: list(executor.map(double, items))}
        times.update(interleaved(one_each, REPEAT))
    finally:
        executor.shutdown()
        threads.close()
        threads.join()
    return table(f"thread mode: {ITEMS:,} trivial items, {WORKERS} workers", times, ITEMS)


def process_bench(items: list[int], opmap: Any) -> dict[str, list[float]]:
    from mpire import WorkerPool  # noqa: PLC0415 - bench extra

    context = multiprocessing.get_context(START_METHOD)
    mapped = opmap(mode="process", workers=WORKERS, progress=False)(double)
    with (
        context.Pool(WORKERS) as pool,
        WorkerPool(n_jobs=WORKERS, start_method=START_METHOD, keep_alive=True) as workers,
    ):
        # Warm: every pool started and used once before timing (opero's is kept between calls).
        assert mapped(items) == pool.map(double, items) == workers.map(double, items)
        times = interleaved(
            {
                "opmap(mode='process')": lambda: mapped(items),
                "multiprocessing.Pool(2).map (warm)": lambda: pool.map(double, items),
                "mpire.WorkerPool(2).map (warm)": lambda: workers.map(double, items),
            },
            FAST_REPEAT,
        )
    return table(
        f"process mode ({START_METHOD}): {ITEMS:,} trivial items, {WORKERS} workers",
        times,
        ITEMS,
    )


def cpu_bench(opmap: Any) -> dict[str, list[float]]:
    n = calibrate(burn, CPU_SECONDS)
    one = statistics.median(timed(functools.partial(burn, n)) for _ in range(5))
    work = [n] * CPU_ITEMS
    mapped = opmap(mode="process", workers=WORKERS, progress=False)(burn)
    with multiprocessing.get_context(START_METHOD).Pool(WORKERS) as pool:
        mapped(work[:WORKERS])  # pool and pipeline warm
        pool.map(burn, work[:WORKERS])
        times = interleaved(
            {
                "opmap(mode='process')": lambda: mapped(work),
                "multiprocessing.Pool(2).map (reference)": lambda: pool.map(burn, work),
                "serial loop": lambda: [burn(n) for n in work],
            },
            CPU_REPEAT,
        )
    title = f"CPU-bound: {CPU_ITEMS} items of {one * 1e3:.1f} ms (burn({n:,})), {WORKERS} workers"
    return table(title, times, CPU_ITEMS)


def async_bench(opmap: Any) -> dict[str, list[float]]:
    mapped = opmap(mode="async", workers=ASYNC_WORKERS, progress=False)(nap)
    items = list(range(ASYNC_ITEMS))

    async def bare() -> None:
        # The floor: the same waves of plain tasks on the same loop, no opero at all.
        for start in range(0, ASYNC_ITEMS, ASYNC_WORKERS):
            await asyncio.gather(*(nap(x) for x in items[start : start + ASYNC_WORKERS]))

    async def run() -> dict[str, list[float]]:
        await mapped(items[:ASYNC_WORKERS])
        times: dict[str, list[float]] = {
            "opmap(mode='async')": [],
            "bare asyncio.gather waves (floor)": [],
        }
        for _ in range(REPEAT):
            for name, make in (
                ("opmap(mode='async')", lambda: mapped(items)),
                ("bare asyncio.gather waves (floor)", bare),
            ):
                start = time.perf_counter()
                await make()
                times[name].append(time.perf_counter() - start)
        return times

    ideal = ASYNC_ITEMS / ASYNC_WORKERS * ASYNC_SLEEP
    times = asyncio.run(run())
    return table(
        f"async mode: {ASYNC_ITEMS:,} items sleeping {ASYNC_SLEEP * 1e3:.0f} ms, "
        f"workers={ASYNC_WORKERS} (ideal {ideal:.3f} s)",
        times,
        ASYNC_ITEMS,
    )


def progress_bench(items: list[int], opmap: Any) -> dict[str, list[float]]:
    quiet = opmap(mode="thread", workers=WORKERS, progress=False)(double)
    shown = opmap(mode="thread", workers=WORKERS, progress=True)(double)
    # opmap has no `file=` for the bar; tqdm writes to sys.stderr as it is when the bar is
    # made, so pointing sys.stderr at devnull measures the bar's bookkeeping, not the terminal.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        quiet(items)
        shown(items)  # tqdm imported
        times = interleaved(
            {
                "opmap(progress=False)": lambda: quiet(items),
                "opmap(progress=True), bar to devnull": lambda: shown(items),
            },
            THREAD_REPEAT,
        )
    return table(f"progress bar: {ITEMS:,} trivial items, thread mode", times, ITEMS)


BENCHMARKS = ("thread", "process", "cpu", "async", "progress")


def main(only: list[str]) -> int:
    from opero import opmap  # noqa: PLC0415 - after the start method is set

    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    wanted = set(only or BENCHMARKS)
    check = Checks()

    load = os.getloadavg()[0]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f}; median of "
        f"{FAST_REPEAT} runs (thread and progress: {THREAD_REPEAT}, async and ThreadPoolExecutor: "
        f"{REPEAT}, "
        f"CPU-bound: {CPU_REPEAT}), contenders interleaved,"
        " ratios paired per round"
    )
    if load > 0.5:
        print("  note: the machine is busy; the multi-process figures will be noisy")
    items = list(range(ITEMS))
    if "thread" in wanted:
        t = thread_bench(items, opmap)
        ratio = paired(t, "multiprocessing ThreadPool(2).map", "opmap(mode='thread')")
        check(f"thread mode {ratio:.2f}x ThreadPool.map (target >= 1.0x)", ratio >= 1.0)
        per_item = statistics.median(t["ThreadPoolExecutor(2).map"])
        executor = per_item / statistics.median(t["opmap(mode='thread')"])
        print(f"  (and {executor:.2f}x ThreadPoolExecutor.map, one future per item, unpaired)")
    if "process" in wanted:
        p = process_bench(items, opmap)
        vs_pool = paired(p, "multiprocessing.Pool(2).map (warm)", "opmap(mode='process')")
        vs_mpire = paired(p, "mpire.WorkerPool(2).map (warm)", "opmap(mode='process')")
        check(f"process mode {vs_pool:.2f}x warm Pool.map (target >= 0.8x)", vs_pool >= 0.8)
        check(f"process mode {vs_mpire:.2f}x warm mpire (target >= 3x)", vs_mpire >= 3.0)
    if "cpu" in wanted:
        c = cpu_bench(opmap)
        speedup = paired(c, "serial loop", "opmap(mode='process')")
        reference = paired(c, "serial loop", "multiprocessing.Pool(2).map (reference)")
        print(f"  (Pool.map's speedup on this machine right now: {reference:.2f}x)")
        label = f"CPU-bound speedup {speedup:.2f}x on {WORKERS} workers (target >= 1.8x)"
        check(label, speedup >= 1.8)
    if "async" in wanted:
        a = async_bench(opmap)
        ideal = ASYNC_ITEMS / ASYNC_WORKERS * ASYNC_SLEEP
        over = statistics.median(a["opmap(mode='async')"]) / ideal
        check(f"async mode {over:.2f}x the ideal {ideal:.3f} s (target <= 1.25x)", over <= 1.25)
    if "progress" in wanted:
        g = progress_bench(items, opmap)
        cost = paired(g, "opmap(progress=True), bar to devnull", "opmap(progress=False)") - 1
        check(f"progress bar costs {cost:+.1%} (target <= +10%)", cost <= 0.10)

    print("\nall targets met" if check.ok else "\nsome targets missed")
    return 0 if check.ok else 1


if __name__ == "__main__":
    multiprocessing.set_start_method(START_METHOD)
    sys.exit(main(sys.argv[1:]))
