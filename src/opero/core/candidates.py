"""Key pools without I/O: each candidate's health, and the order one attempt tries them in.

An ``arg_fallback`` function's candidates are known by their index only (their
values are often API keys).  For each one a :class:`Candidate` keeps what the order
depends on: its breaker (if any), until when it rests after a server's 429 or
``Retry-After`` (CONTRACT 34: that candidate only, the next one is tried at once),
its own rate budget (``candidate_rate_limit=``) and how many calls it has in flight.

:func:`order` turns that into the list of indexes one attempt walks:

* ``"ordered"``: by index (the behaviour without a pool);
* ``"round_robin"``: starting one further along on each call (the caller's cursor),
  rotating among the candidates that are listed, so an open one's turns are shared;
* ``"least_loaded"``: the candidate whose next rate slot is earliest first, then the
  one with the fewest calls in flight; ties keep the round-robin rotation, so equally
  idle candidates share the calls.

Whatever the strategy, healthy candidates (closed, not resting) come before resting
or half-open ones, and open ones are left out.  Like the breaker, nothing here reads
a clock: the caller passes ``now``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Final, final

from opero.core import events, forksafe, validate
from opero.core.breaker import Breaker, State
from opero.core.breaker_state import OnChange
from opero.core.candidate import Candidate, Make
from opero.core.candidate_order import Health, Strategy, order
from opero.core.rate_limit import check_rate
from opero.exceptions import ConfigurationError

__all__ = [
    "STRATEGIES",
    "Candidate",
    "Cursor",
    "Health",
    "Make",
    "Pool",
    "Strategy",
    "check_settings",
    "order",
    "pool_for_scope",
]

logger = logging.getLogger("opero")

#: The accepted ``fallback_strategy`` values; the first is the default.
STRATEGIES: Final = ("ordered", "round_robin", "least_loaded")


@final
class Cursor:
    """Where the next call's round-robin rotation starts: 0, 1, 2, ... across threads.

    ``next`` on an ``itertools.count`` is one C call, so concurrent callers never get
    the same number and need no lock.
    """

    __slots__ = ("next",)

    def __init__(self) -> None:
        #: The next position: the count's own ``__next__`` (no Python frame per call).
        self.next: Callable[[], int] = itertools.count().__next__


@final
class Pool:
    """The candidates of one function (or one ``rate_limit_scope`` group) and its rotation.

    Calls may pass candidate lists of different lengths; a candidate is its index, so
    the pool grows to the longest list seen and every call of ``n`` candidates reads
    the first ``n``.

    Examples:
        >>> pool = Pool("round_robin", Breaker(failure_threshold=1), rate=None, burst=1)
        >>> pool.order(2, now=0.0), pool.order(3, now=0.0), len(pool.candidates)
        ([0, 1], [1, 2, 0], 3)
    """

    __slots__ = (
        "_burst",
        "_lock",
        "_make",
        "_rate",
        "breaker",
        "candidates",
        "cursor",
        "local",
        "name",
        "strategy",
    )

    def __init__(
        self,
        strategy: Strategy,
        breaker: Breaker | None,
        rate: float | None,
        burst: int,
        name: str = "?",
        *,
        make: Make = Candidate,
        local: bool = True,
    ) -> None:
        #: The function (or group) named in the INFO line of each breaker's state change.
        self.name = name
        #: In this process: True for in-process candidates; a pool whose candidates keep
        #: their state elsewhere (a map's parent, redis) says False, and calls to its
        #: candidates never take the shell's fast path.
        self.local = local
        #: How one attempt orders the candidates.
        self.strategy: Strategy = strategy
        #: Every candidate's breaker settings, or None.
        self.breaker = breaker
        #: Each candidate's health, by index (grown, never shrunk).
        self.candidates: list[Candidate] = []
        #: Where the next call's rotation starts.
        self.cursor = Cursor()
        self._rate = rate
        self._burst = burst
        self._make = make
        self._lock = forksafe.lock()

    def health(self, n: int) -> list[Candidate]:
        """The candidates, holding at least ``n`` (new ones start healthy)."""
        candidates = self.candidates
        if len(candidates) < n:
            with self._lock:
                while len(candidates) < n:
                    on_change = None if self.breaker is None else self._log(len(candidates))
                    index = len(candidates)
                    made = self._make(self.breaker, self._rate, self._burst, on_change, index)
                    candidates.append(made)
        return candidates

    def _log(self, index: int) -> OnChange:
        # By index only: a candidate's value is often an API key.
        name = self.name

        def changed(old: State, new: State) -> None:
            logger.info(
                "opero: %s candidate %d breaker %s -> %s",
                name,
                index,
                old,
                new,
                extra={"opero_function": name, "opero_candidate": index},
            )
            if events.on:
                from opero.core.watch import breaker_changed  # noqa: PLC0415 - listeners only

                breaker_changed(name, index, old, new)

        return changed

    def order(self, n: int, now: float) -> list[int]:
        """The order for one attempt of a call with ``n`` candidates (see `order`)."""
        return order(self.strategy, n, self.health(n), now, self.cursor.next())


def check_settings(
    *,
    candidate_breaker: object,
    circuit_breaker: object,
    fallback_strategy: object,
    candidate_rate_limit: object,
    candidate_rate_limit_burst: object,
    arg_fallback: str | None,
) -> tuple[Breaker | None, Breaker | None]:
    """Check the key-pool settings; return the two breakers (None where off).

    The per-candidate settings need ``arg_fallback=`` (they keep one state per
    candidate); ``circuit_breaker=`` is for any function.
    """
    per_candidate = Breaker.from_setting(candidate_breaker, "candidate_breaker")
    whole = Breaker.from_setting(circuit_breaker, "circuit_breaker")
    validate.choice("fallback_strategy", fallback_strategy, STRATEGIES)
    if candidate_rate_limit is not None:
        check_rate(
            candidate_rate_limit,
            candidate_rate_limit_burst,
            "candidate_rate_limit",
            each=" for each candidate",
            hint=", or None",
        )
    else:
        validate.integer("candidate_rate_limit_burst", candidate_rate_limit_burst)
    if arg_fallback is None:
        given = [
            name
            for name, on in (
                ("candidate_breaker", per_candidate is not None),
                ("candidate_rate_limit", candidate_rate_limit is not None),
                ("fallback_strategy", fallback_strategy != STRATEGIES[0]),
            )
            if on
        ]
        if given:
            msg = (
                f"{given[0]} needs arg_fallback= (it acts on each fallback candidate); "
                "for a function without candidates use circuit_breaker= and rate_limit="
            )
            raise ConfigurationError(msg)
    return per_candidate, whole


#: The key pools of named ``rate_limit_scope`` groups, by name (health shared by index).
_group_pools: dict[str, Pool] = {}
_group_pools_lock = forksafe.lock()


def pool_for_scope(
    scope: str,
    strategy: Strategy,
    breaker: Breaker | None,
    rate: float | None,
    burst: int,
    *,
    make: Make = Candidate,
) -> Pool:
    """The key pool of the named ``rate_limit_scope`` group ``scope``, shared by its functions.

    Two functions of one group share their candidates' health and budgets (the same
    keys by index), so a group keeps the settings of the function that created it;
    other settings are a ``ConfigurationError``.
    """
    with _group_pools_lock:
        pool = _group_pools.get(scope)
        if pool is None:
            pool = _group_pools[scope] = Pool(strategy, breaker, rate, burst, scope, make=make)
        elif (pool.strategy, pool.breaker, pool._rate, pool._burst) != (
            strategy,
            breaker,
            rate,
            burst,
        ):
            msg = (
                f"rate_limit_scope {scope!r} already holds a key pool with other "
                "candidate_breaker, candidate_rate_limit, candidate_rate_limit_burst or "
                "fallback_strategy settings; every function in a group must give the same"
            )
            raise ConfigurationError(msg)
    return pool
