"""Per-call cost of opero next to its peers, side by side in one process.

Run:  python bench/overhead.py        (needs: pip install -e ".[bench]")
      python bench/overhead.py sync cache     (only those: sync, async, cache, rate, otel)
      python bench/overhead.py --cpu-time sync     (rounds timed in CPU time)

Prints the success-path overhead of ``@opero()`` and ``@opero(retries=3,
arg_fallback=...)`` over a plain call, next to tenacity, backoff and stamina,
sync and async (async also ``@opero(attempt_timeout=10)``: the cut of an attempt
that returns at once, at most 2 µs more than ``@opero()``); a memory-cache hit
next to ``functools.lru_cache`` and ``cachetools.cached(TTLCache)``; and the rate
limiter's accuracy at 40 calls/s from one thread and from eight.  Targets are
checked and printed as PASS/FAIL.

Each figure is the best of many short rounds, the contenders of a table taking
turns round by round: on a busy machine the best round is the one nothing else
interrupted, and taking turns keeps a slow spell from landing on one contender.
With ``--cpu-time`` the rounds are timed in this process's CPU time
(``time.process_time``) instead of wall time, which leaves out the time the
process was preempted: steadier on a machine shared with other work.
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
from measure import Checks

from opero import opero

NUMBER = 200_000
ROUNDS = 40
#: The clock the rounds are timed with (``--cpu-time``: ``time.process_time``).
TIMER: Callable[[], float] = time.perf_counter


def per_call_table(contenders: dict[str, tuple[Callable[[], Any], int]]) -> dict[str, float]:
    """Best seconds per call of each contender over ROUNDS rounds, taking turns.

    Each entry is ``(stmt, number)``: ``number`` calls a run, split over the rounds.
    """
    timers = {
        name: (timeit.Timer(stmt, timer=TIMER), max(1, number // ROUNDS))
        for name, (stmt, number) in contenders.items()
    }
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(ROUNDS):
        for name, (timer, number) in timers.items():
            best[name] = min(best[name], timer.timeit(number) / number)
    return best


def per_call_async_table(
    contenders: dict[str, tuple[Callable[[], Any], int]],
) -> dict[str, float]:
    """Best seconds per awaited call of each contender, taking turns round by round.

    All rounds run inside one event loop; ``(make, number)`` as in `per_call_table`.
    """

    async def run() -> dict[str, float]:
        best = dict.fromkeys(contenders, float("inf"))
        for _ in range(ROUNDS):
            for name, (make, number) in contenders.items():
                calls = max(1, number // ROUNDS)
                start = TIMER()
                for _ in range(calls):
                    await make()
                best[name] = min(best[name], (TIMER() - start) / calls)
        return best

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
    return per_call_table(
        {
            "plain call": (lambda: plain(1), NUMBER),
            "@opero()": (lambda: opero_default(1), NUMBER),
            "@opero(retries=3, arg_fallback)": (lambda: opero_fallback(1, keys), NUMBER),
            "tenacity.retry": (lambda: tenacity_fn(1), NUMBER // 10),
            "backoff.on_exception": (lambda: backoff_fn(1), NUMBER // 4),
            "stamina.retry": (lambda: stamina_fn(1), NUMBER // 4),
        }
    )


def async_table() -> dict[str, float]:
    opero_default = opero()(aplain)
    opero_timed = opero(attempt_timeout=10)(aplain)
    opero_fallback = opero(retries=3, arg_fallback="key")(aplain)
    tenacity_fn = tenacity.retry(stop=tenacity.stop_after_attempt(4))(aplain)
    backoff_fn = backoff.on_exception(backoff.expo, Exception, max_tries=4)(aplain)
    stamina_fn = stamina.retry(on=Exception, attempts=4)(aplain)
    keys = ["a", "b"]
    number = NUMBER // 4
    return per_call_async_table(
        {
            "plain await": (lambda: aplain(1), number),
            "@opero()": (lambda: opero_default(1), number),
            "@opero(attempt_timeout=10)": (lambda: opero_timed(1), number),
            "@opero(retries=3, arg_fallback)": (lambda: opero_fallback(1, keys), number),
            "tenacity.retry": (lambda: tenacity_fn(1), NUMBER // 40),
            "backoff.on_exception": (lambda: backoff_fn(1), NUMBER // 16),
            "stamina.retry": (lambda: stamina_fn(1), NUMBER // 16),
        }
    )


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
    return per_call_table(
        {
            "functools.lru_cache hit": (lambda: lru(7), NUMBER),
            "cachetools TTLCache hit": (lambda: ttl(7), NUMBER),
            "cachetools TTLCache hit (with lock)": (lambda: ttl_locked(7), NUMBER),
            "@opero(cache=True, cache_ttl=300) hit": (lambda: opero_hit(7), NUMBER),
        }
    )


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


def report_sync(check: Checks) -> None:
    sync = sync_table()
    base = sync["plain call"]
    print("sync success path                        per call   overhead")
    for name, t in sync.items():
        print(f"  {name:36s} {t * 1e6:8.3f} µs {(t - base) * 1e6:8.3f} µs")
    over = sync["@opero()"] - base
    ten = sync["tenacity.retry"] - base
    check(f"@opero() overhead {over * 1e6:.3f} µs <= 0.2 µs", over <= 0.2e-6)
    check(
        f"@opero() overhead is 1/{ten / over:.0f} of tenacity's (target <= 1/20)", over * 20 <= ten
    )


def report_async(check: Checks) -> None:
    asy = async_table()
    abase = asy["plain await"]
    print("\nasync success path                       per call   overhead")
    for name, t in asy.items():
        print(f"  {name:36s} {t * 1e6:8.3f} µs {(t - abase) * 1e6:8.3f} µs")
    aover = asy["@opero()"] - abase
    aten = asy["tenacity.retry"] - abase
    timed = asy["@opero(attempt_timeout=10)"] - asy["@opero()"]
    check(
        f"async @opero(attempt_timeout=10) costs {timed * 1e6:.3f} µs more than @opero() "
        "(target <= 2 µs)",
        timed <= 2e-6,
    )
    check(
        f"async @opero() overhead is 1/{aten / aover:.0f} of tenacity's (target <= 1/10)",
        aover * 10 <= aten,
    )


def report_cache(check: Checks) -> None:
    cache = cache_table()
    print("\nmemory-cache hit                         per call")
    for name, t in cache.items():
        print(f"  {name:36s} {t * 1e6:8.3f} µs")
    ratio = cache["@opero(cache=True, cache_ttl=300) hit"] / cache["cachetools TTLCache hit"]
    check(f"opero hit {ratio:.2f}x cachetools TTLCache hit (target <= 0.65x)", ratio <= 0.65)


def report_rate(check: Checks) -> None:
    runs = [rate_runs() for _ in range(3)]
    print("\nrate limit: 60 calls at 40/s (ideal 1.475 s), 3 runs")
    for key in ("1 thread", "8 threads"):
        values = [r[key] for r in runs]
        med = statistics.median(values)
        print(f"  {key:10s} " + "  ".join(f"{v:.3f} s" for v in values) + f"   median {med:.3f} s")
        check(f"{key}: within 5% of 1.475 s", abs(med - 1.475) <= 0.05 * 1.475)


def otel_table() -> dict[str, float] | None:
    """@opero() before and after ``opentelemetry`` is imported (API only, no SDK), then with
    the SDK's in-memory exporter and reader: a call of one attempt, of two; hooks alone."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
            InMemorySpanExporter,
        )
    except ImportError:
        return None
    import opero.instrumentation as oi  # noqa: PLC0415
    from opero.testing import no_waits  # noqa: PLC0415

    before = opero()(plain)  # (this section imports opentelemetry: the rows after it see it)
    import opentelemetry.metrics  # noqa: PLC0415
    import opentelemetry.trace  # noqa: PLC0415, F401

    after = opero()(plain)
    fails = {"n": 0}

    def flaky(x: int) -> int:
        fails["n"] += 1
        if fails["n"] % 2:
            raise ConnectionError("down")
        return x

    retried = opero(retries=1)(flaky)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer = tracer_provider.get_tracer("bench")

    span = tracer.start_span("parent")
    number = NUMBER // 40
    with no_waits():
        rows = per_call_table(
            {
                "plain call": (lambda: plain(1), NUMBER),
                "@opero(), opentelemetry not imported": (lambda: before(1), NUMBER),
                "@opero(), opentelemetry-api, no SDK": (lambda: after(1), NUMBER),
                "SDK: span.add_event (per attempt)": (
                    lambda: span.add_event("a", {"k": 1}),
                    number,
                ),
                "SDK: child span (per attempt)": (lambda: tracer.start_span("a").end(), number),
            }
        )
        oi.set_hooks([lambda event: None])
        rows.update(per_call_table({"hooks only (one no-op hook)": (lambda: after(1), number)}))
        oi.set_hooks(None)
        oi.enable(tracer_provider=tracer_provider, meter_provider=meter_provider)
        rows.update(
            per_call_table(
                {
                    "SDK: call, 1 attempt": (lambda: after(1), number),
                    "SDK: call, 2 attempts": (lambda: retried(1), number),
                }
            )
        )
        oi.disable()
    span.end()
    oi.enable()  # as it was: the hooks and the detection, no providers
    return rows


def report_otel(check: Checks) -> None:
    rows = otel_table()
    if rows is None:
        print("\nopentelemetry: skipped (pip install opentelemetry-sdk)")
        return
    base, opero_call = rows["plain call"], rows["@opero(), opentelemetry not imported"]
    print("\nopentelemetry (issue 15)                 per call   over plain   x @opero()")
    for name, t in rows.items():
        print(f"  {name:36s} {t * 1e6:8.3f} µs {(t - base) * 1e6:8.3f} µs {t / opero_call:8.1f}")
    extra = rows["@opero(), opentelemetry-api, no SDK"] - opero_call
    per_attempt = rows["SDK: call, 2 attempts"] - rows["SDK: call, 1 attempt"]
    print(f"  per attempt with the SDK: {per_attempt * 1e6:.2f} µs (one more attempt, its wait)")
    check(
        f"opentelemetry-api without an SDK costs {extra * 1e6:.3f} µs (target <= 0.1 µs)",
        extra <= 0.1e-6,
    )
    check(
        "a span event is cheaper than a child span per attempt",
        rows["SDK: span.add_event (per attempt)"] < rows["SDK: child span (per attempt)"],
    )


SECTIONS: dict[str, Callable[[Checks], None]] = {
    "sync": report_sync,
    "async": report_async,
    "cache": report_cache,
    "rate": report_rate,
    "otel": report_otel,
}


def main(only: list[str]) -> int:
    global TIMER  # noqa: PLW0603 - one switch for every table
    if "--cpu-time" in only:
        only = [name for name in only if name != "--cpu-time"]
        TIMER = time.process_time
    unknown = set(only) - set(SECTIONS)
    if unknown:
        print(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    check = Checks()
    clock = "CPU time" if TIMER is time.process_time else "wall time"
    print(f"python {sys.version.split()[0]}; best of {ROUNDS} rounds ({clock}), per call\n")
    for name, report in SECTIONS.items():
        if not only or name in only:
            report(check)
    print("\nall targets met" if check.ok else "\nsome targets missed")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
