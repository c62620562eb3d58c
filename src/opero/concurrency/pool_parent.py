"""The parent's half of a map's shared key pool and circuit breaker (see ``pool_link.py``).

A `Held` answers one worker connection of the map's `ScopeServer` with the parent's
own `Pool` and `BreakerState`: the same objects an in-process call uses, so the
candidate the parent takes for a worker is picked by the engine's own rule
(``pool_flow._take``).  It counts what that worker took and has not settled yet
(breaker permits, calls in flight), and gives them back when the connection closes:
a worker that died mid-call must not keep a half-open probe permit for ever.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, cast, final

from opero.core import clock
from opero.core.pool_flow import _take  # the parent picks as an in-process call does

if TYPE_CHECKING:
    from opero.concurrency.remote_candidate import Row
    from opero.core.breaker_state import BreakerState
    from opero.core.candidates import Candidate, Pool
    from opero.core.pipeline import Pipeline
    from opero.core.run import Run

__all__ = ["Held"]


@final
class _Pick:
    """The part of a call that ``pool_flow._take`` reads and sets: its order and the pick."""

    __slots__ = ("index", "order", "picked", "pos")

    def __init__(self, order: list[int]) -> None:
        self.order, self.pos, self.index = order, 0, -1
        self.picked: Candidate | None = None


def _row(candidate: Candidate, now: float) -> Row:
    """What a worker mirrors of ``candidate`` (seconds from ``now``, so clocks may differ)."""
    breaker = candidate.breaker
    at = None if breaker is None else breaker.reopens_at(now)
    return (
        candidate.state(now),
        None if at is None else at - now,
        candidate.rest_until - now,
        candidate.next_slot(now) - now,
    )


@final
class Held:
    """The parent's answers to one worker, and what that worker holds of the pool."""

    __slots__ = ("_circuit", "_flights", "_permits", "pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._permits: Counter[int] = Counter()  # breaker permits taken, by candidate
        self._flights: Counter[int] = Counter()  # calls started and not ended, by candidate
        self._circuit = 0  # circuit_breaker= permits taken

    def answer(self, request: tuple[Any, ...]) -> Any:
        """The answer to a ``("pool", op, index, arg, n, ends)`` or ``("circuit", op, arg)``."""
        now = clock.now()
        if request[0] == "circuit":
            return self._circuit_answer(request[1], request[2], now)
        _, op, index, arg, n, ends = request
        pool = cast("Pool", self.pipeline.pool)
        health = pool.health(n)
        for ended in ends:
            health[ended].ended()
            self._flights[ended] -= 1
        if op == "order":
            order = pool.order(n, now)
            taken, delay = self._pick(health, order, now)
            return order, taken, delay, self._rows(health, n, now)
        if op == "take":
            taken, delay = self._pick(health, [index], now)
            return taken >= 0, delay, self._rows(health, n, now)
        if op == "reserve":
            return self._reserve(health[index], now)
        self._settle(health[index], index, op, arg, now)
        if op == "start":
            return True, self._reserve(health[index], now), self._rows(health, n, now)
        return self._rows(health, n, now)

    def _pick(self, health: list[Candidate], order: list[int], now: float) -> tuple[int, float]:
        """Take the first of ``order`` that lets a call through; ``(its index, slot wait)``."""
        pick = _Pick(order)
        if not _take(cast("Run", pick), health, now):
            return -1, 0.0
        candidate = health[pick.index]
        self._flights[pick.index] += 1
        if candidate.breaker is not None:
            self._permits[pick.index] += 1
        return pick.index, self._reserve(candidate, now)

    @staticmethod
    def _reserve(candidate: Candidate, now: float) -> float:
        return 0.0 if candidate.budget is None else candidate.budget.reserve(now)

    def _settle(self, candidate: Candidate, index: int, op: str, arg: Any, now: float) -> None:
        """``op`` on candidate ``index``: start, record, release, rest or failed (end: none)."""
        breaker = candidate.breaker
        if op == "start":
            candidate.started()
            self._flights[index] += 1
        elif op in {"record", "release"} and breaker is not None:
            self._permits[index] -= 1
            if op == "release":
                breaker.release(now)
                return
            breaker.record(now, failed=bool(arg))
            if arg:
                candidate.failed()
        elif op == "rest":
            candidate.rest(now, float(arg))
        elif op == "failed":
            candidate.failed()

    def _rows(self, health: list[Candidate], n: int, now: float) -> list[Row]:
        return [_row(candidate, now) for candidate in health[:n]]

    def _circuit_answer(self, op: str, arg: Any, now: float) -> Any:
        breaker = cast("BreakerState", self.pipeline.circuit)
        ok = True
        if op == "acquire":
            ok = breaker.acquire(now)
            self._circuit += ok
        elif op == "record":
            self._circuit -= 1
            breaker.record(now, failed=bool(arg))
        else:
            self._circuit -= 1
            breaker.release(now)
        at = breaker.reopens_at(now)
        return ok, (breaker.state(now), None if at is None else at - now)

    def drop(self) -> None:
        """The worker is gone: give back the permits and calls it had not settled."""
        now, p = clock.now(), self.pipeline
        if p.pool is not None:
            health = p.pool.candidates
            for index, count in (+self._permits).items():
                breaker = health[index].breaker
                for _ in range(count if breaker is not None else 0):
                    breaker.release(now)  # type: ignore[union-attr]
            for index, count in (+self._flights).items():
                for _ in range(count):
                    health[index].ended()
        if p.circuit is not None:
            for _ in range(max(0, self._circuit)):
                p.circuit.release(now)
