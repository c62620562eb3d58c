"""Per-function statistics: cheap to count, consistent to read.

Counters are ``itertools.count`` objects: ``next()`` on one is a single C call, so
increments from many threads are never lost and cost no lock on the success path.
Calls and attempts are derived rather than counted (a call is served from the cache,
enters the retry layer once, or ends before either, which is counted on that rare
path), which keeps a successful uncached call at one increment.  Waits and retries are
counted once they have happened, so cancelling a call in the middle of a backoff never
reports a retry that did not run.
"""

from __future__ import annotations

import itertools
from typing import final

from opero.core import clock, forksafe
from opero.core.frozen import Frozen
from opero.core.owned import Owned

__all__ = ["CandidateStatistics", "Counters", "Statistics", "count_value"]


@final
class CandidateStatistics(Frozen):
    """One ``arg_fallback`` candidate's health and counts, by index: never its value (a key)."""

    __slots__ = (
        "budget_used",
        "calls",
        "failures",
        "in_flight",
        "index",
        "reopens_in",
        "rests",
        "state",
    )

    #: Its position in the candidate list.
    index: int
    #: Its breaker's state: ``"closed"``, ``"open"`` or ``"half_open"`` (closed without one).
    state: str
    #: Seconds until an open breaker lets a probe through or a rest ends (None: neither).
    reopens_in: float | None
    #: Calls of the function that went to it.
    calls: int
    #: Of those, the ones whose routed error counted as a failure.
    failures: int
    #: Times a server's 429 or Retry-After rested it.
    rests: int
    #: Calls to it running now.
    in_flight: int
    #: The fraction of its ``candidate_rate_limit`` burst booked ahead (0.0 to 1.0; None without).
    budget_used: float | None

    def __init__(
        self,
        *,
        index: int,
        state: str,
        reopens_in: float | None,
        calls: int,
        failures: int,
        rests: int,
        in_flight: int,
        budget_used: float | None,
    ) -> None:
        self._init(
            index=index,
            state=state,
            reopens_in=reopens_in,
            calls=calls,
            failures=failures,
            rests=rests,
            in_flight=in_flight,
            budget_used=budget_used,
        )


@final
class Statistics(Frozen):
    """A snapshot of what one decorated function has done since it was decorated."""

    __slots__ = (
        "attempts",
        "breaker",
        "cache_errors",
        "cache_hits",
        "cache_misses",
        "calls",
        "candidates",
        "failures",
        "fallbacks",
        "retries",
        "waited",
    )

    #: Calls of the decorated function.
    calls: int
    #: Times the wrapped function itself ran (every retry and fallback candidate).
    attempts: int
    #: Retry attempts started (after backoff).
    retries: int
    #: Times a later fallback candidate was tried after an earlier one failed.
    fallbacks: int
    #: Calls that raised (gave up with AllFailedError, or a non-retryable error).
    failures: int
    #: Calls answered from the cache (including waiters of a single-flight computation).
    cache_hits: int
    #: Calls that looked in the cache and computed.
    cache_misses: int
    #: Cache key, read or write failures (the call went on uncached).
    cache_errors: int
    #: Seconds spent waiting: backoff, fallback pauses and rate limiting.
    waited: float
    #: Each ``arg_fallback`` candidate's health and counts, by index (empty without a key pool).
    candidates: tuple[CandidateStatistics, ...]
    #: The state of the function's own ``circuit_breaker=`` (None without one).
    breaker: str | None

    def __init__(
        self,
        *,
        calls: int,
        attempts: int,
        retries: int,
        fallbacks: int,
        failures: int,
        cache_hits: int,
        cache_misses: int,
        cache_errors: int,
        waited: float,
        candidates: tuple[CandidateStatistics, ...] = (),
        breaker: str | None = None,
    ) -> None:
        self._init(
            calls=calls,
            attempts=attempts,
            retries=retries,
            fallbacks=fallbacks,
            failures=failures,
            cache_hits=cache_hits,
            cache_misses=cache_misses,
            cache_errors=cache_errors,
            waited=waited,
            candidates=candidates,
            breaker=breaker,
        )


@final
class _Count(Owned, itertools.count):  # type: ignore[type-arg]
    """An ``itertools.count`` (``next()`` is one C call) that pickles as its pipeline's own."""

    __slots__ = ("_owner",)
    # Ahead of count's own __reduce__, which would pickle a detached copy.
    __reduce__ = Owned.__reduce__


def count_value(counter: itertools.count[int]) -> int:
    """The next value of ``counter`` (how many times it was counted), without advancing it."""
    # count's repr is "count(N)" ("_Count(N)" here); reading it does not advance it.
    text = repr(counter)
    return int(text[text.index("(") + 1 : -1])


#: The names of the ``_Count`` counters of `Counters`.
_COUNTERS: tuple[str, ...] = ("entries", "retries", "fallbacks", "failures", "cache_hits")
_COUNTERS += ("cache_misses", "unserved")


@final
class Counters:
    """The live counters behind `Statistics`."""

    __slots__ = (
        "_bulk",
        "_lock",
        "_waited",
        "cache_hits",
        "cache_misses",
        "entries",
        "failures",
        "fallbacks",
        "retries",
        "unserved",
    )

    def __init__(self) -> None:
        #: Calls that reached the retry layer (not served from the cache).
        self.entries = _Count()
        self.retries = _Count()
        self.fallbacks = _Count()
        self.failures = _Count()
        self.cache_hits = _Count()
        self.cache_misses = _Count()
        #: Calls that ended before reaching the function and were not answered from the
        #: cache: cancelled or interrupted in a rate-limit wait or while waiting for another
        #: call's computation of the same key, or given that computation's error.
        self.unserved = _Count()
        self._waited = 0.0
        #: Counts added in bulk by :meth:`add`, on top of the counters.
        self._bulk: dict[str, int] = {}
        self._lock = forksafe.lock()

    def own(self, root: object) -> None:
        """Tie each counter to ``root`` (its pipeline), so they pickle as its own."""
        for name in _COUNTERS:
            getattr(self, name).own(root, "counters", name)

    def add(self, counter: str, n: int) -> None:
        """Count ``n`` at once (a whole chunk of a map), under the lock: one step, not n."""
        with self._lock:
            self._bulk[counter] = self._bulk.get(counter, 0) + n

    def add_entries(self, n: int) -> None:
        """Count ``n`` calls that reached the function, at once (a map's chunk)."""
        self.add("entries", n)

    def add_cache_hits(self, n: int) -> None:
        """Count ``n`` calls answered from the cache, at once (a map's chunk)."""
        self.add("cache_hits", n)

    def add_cache_misses(self, n: int) -> None:
        """Count ``n`` calls that missed the cache and computed, at once (a map's chunk)."""
        self.add("cache_misses", n)

    def add_worker_counts(self, retries: int, fallbacks: int, failures: int, waited: float) -> None:
        """Add what a map's worker counted for one chunk (see :meth:`tally`), in one step."""
        self.merge({"retries": retries, "fallbacks": fallbacks, "failures": failures}, waited)

    def add_wait(self, seconds: float) -> None:
        """Account ``seconds`` of waiting (backoff, fallback pause, rate limit)."""
        with self._lock:
            self._waited += seconds

    def tally(self) -> tuple[int, int, int, float]:
        """``(retries, fallbacks, failures, waited)`` now, without building a `Statistics`.

        A map's worker reads it before and after each chunk and sends the difference
        to the parent (see :meth:`merge`), so it has to be cheap.
        """
        bulk = self._bulk
        return (
            count_value(self.retries) + bulk.get("retries", 0),
            count_value(self.fallbacks) + bulk.get("fallbacks", 0),
            count_value(self.failures) + bulk.get("failures", 0),
            self._waited,
        )

    def merge(self, counts: dict[str, int], waited: float = 0.0) -> None:
        """Add counts made in another process (a map's worker) in one step, under the lock.

        ``counts`` maps counter names to increments (``{"retries": 2, "fallbacks": 6}``),
        so a reader never sees one chunk's retries without its fallbacks.
        """
        with self._lock:
            bulk = self._bulk
            for counter, n in counts.items():
                if n:
                    bulk[counter] = bulk.get(counter, 0) + n
            self._waited += waited

    def waited_for(self, seconds: float, since: float) -> None:
        """Account a wait of ``seconds`` that was cut short: only the part spent, from ``since``."""
        self.add_wait(min(seconds, max(0.0, clock.now() - since)))

    def snapshot(
        self,
        cache_errors: int = 0,
        candidates: tuple[CandidateStatistics, ...] = (),
        breaker: str | None = None,
    ) -> Statistics:
        """The current values as a frozen `Statistics` (with the pool's and breaker's)."""
        bulk = dict(self._bulk)

        def read(name: str) -> int:
            counter: itertools.count[int] = getattr(self, name)
            return count_value(counter) + bulk.get(name, 0)

        entries, hits = read("entries"), read("cache_hits")
        retries, fallbacks = read("retries"), read("fallbacks")
        return Statistics(
            calls=entries + hits + read("unserved"),
            attempts=entries + retries + fallbacks,
            retries=retries,
            fallbacks=fallbacks,
            failures=read("failures"),
            cache_hits=hits,
            cache_misses=read("cache_misses"),
            cache_errors=cache_errors,
            waited=self._waited,
            candidates=candidates,
            breaker=breaker,
        )
