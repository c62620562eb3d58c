"""A worker process that dies never hangs the map (CONTRACT 21).

Item 3 kills its worker (``os._exit`` or SIGKILL); every other item still gets
its own result, the killer gets a ``ConcurrencyError`` once its retry budget is
spent, and the pool is rebuilt for the next map.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from worker_helpers import adie_on, die_on, meet, run_script, write_script

from opero import ConcurrencyError, opmap

pytestmark = pytest.mark.timeout(40)

ITEMS = list(range(8))
EXPECTED = [x * x for x in ITEMS]


def _run(mode: str, *args: object, **settings: object) -> list[object]:
    func = adie_on if mode == "async_process" else die_on
    mapped = opmap(mode=mode, workers=2, progress=False, min_delay=0.001, **settings)(func)
    result = mapped(ITEMS, *args)
    if mode == "async_process":
        import asyncio  # noqa: PLC0415

        async def wait() -> list[object]:
            return await result  # type: ignore[no-any-return]

        return asyncio.run(wait())
    return result  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["process", "async_process"])
@pytest.mark.parametrize("how", ["exit", "kill"])
def test_item_that_kills_its_worker_is_a_concurrency_error(mode: str, how: str) -> None:
    began = time.monotonic()
    results = _run(mode, how, retries=1)
    elapsed = time.monotonic() - began

    assert len(results) == len(ITEMS)
    assert isinstance(results[3], ConcurrencyError)
    assert "died" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [
        e for i, e in enumerate(EXPECTED) if i != 3
    ]
    assert elapsed < 15


@pytest.mark.parametrize("mode", ["process", "async_process"])
@pytest.mark.parametrize("chunk_size", [1, 4])
def test_worker_death_with_chunks_charges_only_the_killer(mode: str, chunk_size: int) -> None:
    results = _run(mode, "exit", retries=1, chunk_size=chunk_size)
    assert isinstance(results[3], ConcurrencyError)
    assert [r for i, r in enumerate(results) if i != 3] == [
        e for i, e in enumerate(EXPECTED) if i != 3
    ]


@pytest.mark.parametrize("mode", ["process", "async_process"])
@pytest.mark.parametrize("how", ["exit", "kill"])
def test_item_that_dies_once_succeeds_on_retry(mode: str, how: str, tmp_path: Path) -> None:
    marker = tmp_path / "died-once"
    results = _run(mode, how, str(marker), retries=1)
    assert marker.exists()
    assert results == EXPECTED


def test_pool_is_rebuilt_and_keeps_its_size_after_a_death(tmp_path: Path) -> None:
    _run("process", "kill", retries=1)
    # Two items that each wait until the other is running: they finish only if the
    # rebuilt pool really has two live workers holding them at once.  A pool rebuilt
    # with one worker leaves the first item alone until its patience runs out.  This
    # measures the pool itself, not how busy the machine is.
    mapped = opmap(mode="process", workers=2, chunk_size=1, progress=False)(meet)
    results = mapped(["a", "b"], str(tmp_path), 1)
    assert [met for _, met in results] == [True, True], "the rebuilt pool ran its items one by one"
    assert len({pid for pid, _ in results}) == 2


def test_unordered_map_survives_a_death_too() -> None:
    mapped = opmap(mode="process", workers=2, ordered=False, retries=1, progress=False)(die_on)
    results = mapped(ITEMS)
    assert len(results) == len(ITEMS)
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
    assert sorted(r for r in results if isinstance(r, int)) == sorted(
        e for i, e in enumerate(EXPECTED) if i != 3
    )


def test_imap_survives_a_death() -> None:
    mapped = opmap(mode="process", workers=2, retries=1, progress=False)(die_on)
    results = list(mapped.imap(ITEMS))
    assert isinstance(results[3], ConcurrencyError)
    assert results[:3] == EXPECTED[:3]
    assert results[4:] == EXPECTED[4:]


_DEATH_IN_MAIN = """
import os
import sys

from opero import opmap


def work(x):
    if x == 2:
        os._exit(3)
    return x + 1


if __name__ == "__main__":
    mapped = opmap(mode="process", workers=2, retries=1, progress=False,
                   start_method=sys.argv[1])(work)
    results = mapped(range(5))
    print([type(r).__name__ if isinstance(r, Exception) else r for r in results])
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_death_in_a_script_under_clean_start_methods(method: str, tmp_path: Path) -> None:
    done = run_script(write_script(tmp_path, _DEATH_IN_MAIN), method, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 2, 'ConcurrencyError', 4, 5]"


def test_innocent_item_in_flight_beside_a_killer_is_never_charged() -> None:
    # One worker, two items in flight: 0 kills the worker, 1 is innocent.  Both futures fail
    # with BrokenProcessPool; which one is collected last is up to a set's order, so the
    # scenario is repeated until that order has gone both ways.
    mapped = opmap(mode="process", workers=1, chunk_size=1, retries=0, progress=False)(die_on)
    for _ in range(12):
        results = mapped([3, 5])
        assert isinstance(results[0], ConcurrencyError)
        assert results[1] == 25, "the innocent item was charged with its neighbour's death"
