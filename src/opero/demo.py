"""``opero demo``: a guided tour of opero against a flaky HTTP service on this machine.

The tour starts ``FlakyService`` (stdlib only, random
port, failures planned from a seed) so that it needs no network and no
accounts, then shows each layer doing its job on real HTTP requests: retries
with backoff, fallback across API keys, cache hits, a rate limit held across
threads, and ``@opmap`` fetching many URLs in thread and async mode.  It ends
with a table of every decorated function's statistics.

API keys appear in the output by position only (``key #1``), never by value:
secrets must not reach output, logs or exception text, and the tour shows how.
Every line fits an 80-column terminal; the progress bars are drawn only on a
terminal, and elsewhere each leaves one summary line on stderr.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from opero import AllFailedError, opero, opmap
from opero._demo_pace import FULL, QUICK, SEED, WIDTH, Pace, demo_keys, failure_label, fit
from opero._demo_server import (
    TRANSIENT,
    FlakyService,
    UnauthorizedError,
    aget,
    get,
)
from opero.concurrency.progress import Progress, meter
from opero.core.stats import Statistics

__all__ = [
    "FULL",
    "QUICK",
    "SEED",
    "WIDTH",
    "Pace",
    "Tour",
    "demo_keys",
    "failure_label",
    "fit",
    "run_tour",
]


class Tour:
    """The sections of the tour, in order, each printing what happened and why it matters."""

    def __init__(self, service: FlakyService, pace: Pace, out: TextIO) -> None:
        self.service, self.pace, self.out = service, pace, out
        self.address = service.address
        self.keys = demo_keys(service.seed)
        #: (section, statistics, seconds) rows of the final table.
        self.rows: list[tuple[str, Statistics, float]] = []

    def say(self, text: str = "") -> None:
        """Print at once, so the text and the progress bars on stderr stay in order."""
        print(fit(text), file=self.out, flush=True)

    def retries(self) -> None:
        """A request whose first three tries get 503, retried with doubling delays."""
        self.say("1. Retry with backoff: /flaky/3/report answers 503 three times, then 200.")
        self.say(f"   @opero(retries=4, min_delay={self.pace.min_delay * 2:g}, backoff_factor=2)")
        start = time.monotonic()

        def report_retry(error: BaseException, attempt: int) -> None:
            self.say(f"   +{time.monotonic() - start:.2f}s retry {attempt} after {error}")

        @opero(
            retries=4,
            min_delay=self.pace.min_delay * 2,
            backoff_factor=2,
            retry_on=TRANSIENT,
            on_retry=report_retry,
        )
        def report() -> bytes:
            return get(self.address, "/flaky/3/report", timeout=self.pace.timeout)

        report()
        stats = report.statistics()
        self.say(f"   +{time.monotonic() - start:.2f}s 200 OK on attempt {stats.attempts}")
        self.say(f"   retries: {stats.retries}, waited {stats.waited:.2f}s between attempts\n")
        self.rows.append(("retry + backoff", stats, time.monotonic() - start))

    def fallback(self) -> None:
        """Key #0 is revoked: every call falls back to key #1, and keys stay unprinted."""
        self.say('2. Fallback across API keys: @opero(arg_fallback="api_key"), key #0 revoked.')
        start, keys = time.monotonic(), list(self.keys)
        tried: list[int] = []

        @opero(
            retries=1,
            min_delay=self.pace.min_delay,
            arg_fallback="api_key",
            retry_on=(UnauthorizedError, *TRANSIENT),
        )
        def account(section: str, api_key: list[str]) -> int:
            tried.append(keys.index(api_key[0]))  # report the position, never the key
            get(self.address, f"/ok/{section}", timeout=self.pace.timeout, api_key=api_key[0])
            return tried[-1]

        for section in ("profile", "orders", "invoices"):
            tried.clear()
            used = account(section, api_key=keys)
            steps = " -> ".join(f"key #{i}" for i in tried)
            self.say(f"   GET /ok/{section}: tried {steps}; answered with key #{used}")
        refused = self.service.answers[401]
        self.say(
            f"   fallbacks: {account.statistics().fallbacks}; the service answered 401 x{refused}"
        )
        self.say("   With only the revoked key, the error names the path and status, no key:")
        try:
            account("billing", api_key=keys[:1])
        except AllFailedError as error:
            for line in str(error).splitlines():
                self.say(f"     {line}")
        self.say("   (keys are shown by position: secrets never reach output, logs or errors)\n")
        self.rows.append(("key fallback", account.statistics(), time.monotonic() - start))

    def cache(self) -> None:
        """A slow lookup asked for again is served from memory; the service never sees it."""
        ms = self.pace.lookup_ms
        self.say(f"3. Cache: @opero(cache=True, cache_ttl=300) on a lookup taking {ms} ms.")
        start = time.monotonic()

        @opero(cache=True, cache_ttl=300)
        def forecast(city: str) -> bytes:
            return get(self.address, f"/slow/{ms}/{city}", timeout=ms / 1000 + 5)

        cities = ["berlin", "paris", "berlin", "lima", "paris", "berlin", "tokyo", "lima"]
        for city in cities:
            hits, began = forecast.statistics().cache_hits, time.perf_counter()
            forecast(city)
            took = time.perf_counter() - began
            source = "cache" if forecast.statistics().cache_hits > hits else "service"
            self.say(f"   forecast({city!r:9}) {took * 1000:9.3f} ms  from the {source}")
        stats = forecast.statistics()
        self.say(
            f"   cache hits: {stats.cache_hits}, misses: {stats.cache_misses}; the service"
            f" was asked {self.service.count('/slow/')} times for {len(cities)} lookups\n"
        )
        self.rows.append(("cache", stats, time.monotonic() - start))

    def rate_limit(self) -> None:
        """Four threads call as fast as they can; the calls still start evenly spaced."""
        rate, calls = self.pace.rate, self.pace.rate_calls
        self.say(f"4. Rate limit: @opero(rate_limit={rate:g}), {calls} calls from 4 threads.")
        start = time.monotonic()
        starts: list[float] = []

        @opero(rate_limit=rate)
        def ping(n: int) -> int:
            starts.append(time.monotonic())
            get(self.address, "/ping", timeout=self.pace.timeout + 5)
            return n

        # The bar @opmap draws, so it appears (and stays quiet) where a map's would.
        bar = meter(Progress(label="ping", summary=True), calls, unit="call")
        try:
            with ThreadPoolExecutor(4) as pool:
                for _ in pool.map(ping, range(calls)):
                    if bar is not None:
                        bar.advance(1, 0)
        finally:
            if bar is not None:
                bar.close()
        span = max(starts) - min(starts)
        ideal = (calls - 1) / rate
        stats = ping.statistics()
        self.say(
            f"   {calls} calls started over {span:.2f}s (ideal {ideal:.2f}s): "
            f"{(calls - 1) / span:.1f} calls/s, limit {rate:g}/s"
        )
        self.say(f"   the threads waited {stats.waited:.2f}s in total for their turn\n")
        self.rows.append(("rate limit", stats, time.monotonic() - start))

    def map_section(
        self, name: str, results: Sequence[Any], stats: Statistics, took: float
    ) -> None:
        """Report one map: every item has an entry; failures are counted by type."""
        failures = Counter(failure_label(r) for r in results if isinstance(r, BaseException))
        failed = sum(failures.values())
        self.say(
            f"   {len(results)} entries in {took:.2f}s: {len(results) - failed} ok, {failed} failed"
        )
        for label, count in sorted(failures.items()):
            self.say(f"     {label:<32}{count:>4}")
        self.say(
            f"   {stats.retries} retries on the way: flaky items recover; broken, missing and"
            f" hanging\n   ones cannot. Backoff waits (overlapping): {stats.waited:.2f}s\n"
        )
        self.rows.append((name, stats, took))

    def map_threads(self) -> None:
        """``@opmap(mode="thread")`` over the service's items, retrying each on its own."""
        p = self.pace
        self.say(f'5. @opmap(mode="thread", workers={p.workers}, retries=3): {p.urls} URLs.')
        self.say("   Each item retries on its own; a failure becomes that item's entry.")

        def fetch_item(n: int) -> bytes:
            return get(self.address, f"/items/{n}", timeout=p.timeout)

        # opmap is typed loosely (it returns a different kind of callable per mode), so it
        # is applied by call: a decorator returning Any would fail mypy --strict.
        fetch = opmap(mode="thread", workers=p.workers, **self.map_settings())(fetch_item)
        start = time.monotonic()
        results = fetch(range(p.urls))
        self.map_section("opmap thread", results, fetch.statistics(), time.monotonic() - start)

    def map_async(self) -> None:
        """The same items as tasks on one event loop: many in flight, no threads."""
        p = self.pace
        self.service.reset()  # the same flaky items fail again, so the two maps compare
        self.say(
            f'6. @opmap(mode="async", workers={p.async_workers}, retries=3): the same {p.urls}'
            " URLs,\n   raw HTTP/1.0 over asyncio.open_connection."
        )

        async def afetch_item(n: int) -> bytes:
            return await aget(self.address, f"/items/{n}", timeout=p.timeout)

        # The tour only counts outcomes, so entries may come back in completion order.
        fetch = opmap(mode="async", workers=p.async_workers, ordered=False, **self.map_settings())(
            afetch_item
        )

        async def fetch_all() -> list[Any]:
            results: list[Any] = await fetch(range(p.urls))
            return results

        start = time.monotonic()
        results = asyncio.run(fetch_all())
        self.map_section("opmap async", results, fetch.statistics(), time.monotonic() - start)

    def map_settings(self) -> dict[str, Any]:
        """The per-item ``@opero`` settings both maps share: 503s and timeouts are retried.

        ``progress=True``: a bar on a terminal, and one summary line anywhere else.
        """
        return {
            "progress": True,
            "retries": 3,
            "min_delay": self.pace.min_delay,
            "backoff_factor": 2,
            "retry_on": TRANSIENT,
        }

    def summary(self, took: float) -> None:
        """One row per decorated function, from its ``statistics()``."""
        self.say("Summary (from each function's .statistics(); hits: cache hits)")
        # Each column one wider than its heading: the table fits 80 columns.
        header = ("calls", "attempts", "retries", "fallbacks", "hits", "failed")
        self.say(
            f"  {'section':<16}"
            + "".join(f"{h:>{len(h) + 1}}" for h in header)
            + "   waited   time"
        )
        for name, s, seconds in self.rows:
            numbers = (s.calls, s.attempts, s.retries, s.fallbacks, s.cache_hits, s.failures)
            cells = "".join(f"{n:>{len(h) + 1}}" for n, h in zip(numbers, header, strict=True))
            self.say(f"  {name:<16}{cells}{s.waited:>8.2f}s{seconds:>6.2f}s")
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.service.answers.items(), key=str))
        self.say(f"  service answers: {answers}")
        self.say(f"\nTour finished in {took:.1f}s. Next: the README's quick start.")


def run_tour(*, quick: bool = False, seed: int = SEED, out: TextIO | None = None) -> int:
    """Run the whole tour; returns the exit code (0)."""
    pace = QUICK if quick else FULL
    out = out or sys.stdout
    start = time.monotonic()
    service = FlakyService(
        seed=seed, revoked_keys=demo_keys(seed)[:1], slow=pace.slow, hang=pace.timeout * 8
    )
    with service:
        intro = (
            f"opero demo{' --quick' if quick else ''}: a flaky HTTP service is running at"
            f" {service.url} (seed {seed}). It answers 503 at random, answers slowly, hangs"
            " now and then, and refuses API key #0."
        )
        print(textwrap.fill(intro, WIDTH, break_on_hyphens=False) + "\n", file=out, flush=True)
        tour = Tour(service, pace, out)
        for section in (tour.retries, tour.fallback, tour.cache, tour.rate_limit):
            section()
        tour.map_threads()
        tour.map_async()
        tour.summary(time.monotonic() - start)
    return 0
