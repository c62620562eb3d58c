"""A Dask map's key pool and ``circuit_breaker=`` are held where the map is submitted (issue 14).

The same checks as ``tests/concurrency/test_map_key_pools.py``, on the session's
2-worker ``LocalCluster``: a candidate that always fails opens once for the whole
map, so it gets at most ``failure_threshold`` calls plus the calls in flight when it
opened, across both workers (per-worker breakers gave each worker its own
``failure_threshold``).  Calls are lines in a file (``pid key``); real time, no timing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

from opero import AllFailedError, Breaker, CircuitOpenError, opmap
from opero.core import clock

pytestmark = pytest.mark.timeout(90)

THRESHOLD = 3
WORKERS = 2  # the session cluster's workers, one thread each
ITEMS = 20
BREAKER = Breaker(failure_threshold=THRESHOLD, cooldown=600)


def keyed(directory: str, bad: frozenset[str], keys: tuple[str, ...]) -> Callable[..., Any]:
    """``call(x, key)``: logs ``pid key``, takes 50 ms, fails for a key in ``bad``.

    A closure that imports what it uses, so cloudpickle ships it by value to the workers.
    """

    def call(x: int, key: list[str] = list(keys)) -> tuple[int, str]:  # noqa: B006
        import os  # noqa: PLC0415
        import time  # noqa: PLC0415

        with open(os.path.join(directory, "calls"), "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {key[0]}\n")
        time.sleep(0.05)
        if key[0] in bad:
            msg = "revoked"
            raise RuntimeError(msg)
        return x, key[0]

    return call


def calls(directory: Path) -> list[tuple[int, str]]:
    path = directory / "calls"
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    return [(int(pid), key) for pid, key in rows]


def test_a_failing_candidate_opens_once_for_the_whole_dask_map(
    dask_client: Any, tmp_path: Path
) -> None:
    mapped = opmap(
        mode="dask",
        client=dask_client,
        chunk_size=1,
        retries=0,
        progress=False,
        arg_fallback="key",
        candidate_breaker=BREAKER,
    )(keyed(str(tmp_path), frozenset({"bad"}), ("bad", "good")))
    assert mapped(list(range(ITEMS))) == [(x, "good") for x in range(ITEMS)]
    made = calls(tmp_path)
    assert len({pid for pid, _ in made}) == WORKERS  # both workers ran items
    assert sum(key == "bad" for _, key in made) <= THRESHOLD + WORKERS
    pool = mapped.__opero__.pool
    assert pool.candidates[0].state(clock.now()) == "open"  # the submitter's own pool


def test_the_dask_map_shares_its_circuit_breaker(dask_client: Any, tmp_path: Path) -> None:
    inner = keyed(str(tmp_path), frozenset({"down"}), ("down",))

    def fixed(x: int) -> Any:
        return inner(x)

    mapped = opmap(
        mode="dask",
        client=dask_client,
        chunk_size=1,
        retries=0,
        progress=False,
        circuit_breaker=BREAKER,
    )(fixed)
    results = mapped(list(range(ITEMS)))
    assert all(isinstance(r, (AllFailedError, CircuitOpenError)) for r in results)
    assert len(calls(tmp_path)) <= THRESHOLD + WORKERS
    assert sum(isinstance(r, CircuitOpenError) for r in results) >= ITEMS - THRESHOLD - WORKERS
