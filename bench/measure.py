"""Measuring helpers shared by the @opmap benchmarks (``bench/opmap.py``, ``bench/dask.py``).

Work functions stay in each script: worker processes receive them by value
from ``__main__``, while this module is only ever used in the parent.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved(contenders: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[float]]:
    """Seconds per run of each contender, ``repeat`` rounds, the order rotating each round."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(contenders[name]))
    return times


def paired(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of ``slow / fast`` measured in the same round.

    On a shared VM the speed of a core drifts by tens of percent over seconds;
    a ratio of two runs made back to back cancels that drift, where a ratio of
    two medians taken over the whole benchmark does not.
    """
    return statistics.median(s / f for s, f in zip(times[slow], times[fast], strict=True))


def calibrate(burn: Callable[[int], Any], seconds: float) -> int:
    """Iterations of ``burn`` that take about ``seconds`` here."""
    n = 100_000
    while (took := timed(functools.partial(burn, n))) < 0.02:
        n *= 2
    for _ in range(3):  # refine on the median of a few runs
        n = int(n * seconds / took)
        took = statistics.median(timed(functools.partial(burn, n)) for _ in range(5))
    return n


def table(title: str, times: dict[str, list[float]], items: int) -> dict[str, list[float]]:
    """Print one table (median, spread, items/s) and return the times of every round."""
    print(f"\n{title}")
    print(f"  {'':44s} {'median':>9s} {'min':>9s} {'max':>9s} {'items/s':>11s}")
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"  {name:44s} {med * 1e3:7.1f}ms {min(values) * 1e3:7.1f}ms "
            f"{max(values) * 1e3:7.1f}ms {items / med:11,.0f}"
        )
    return times


class Checks:
    """Targets printed as PASS/FAIL; ``ok`` is False once one is missed."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self, label: str, passed: bool) -> None:
        self.ok &= passed
        print(f"  [{'PASS' if passed else 'FAIL'}] {label}")
