"""Decorated functions travel: by reference from a module, by value from ``__main__``.

Real interpreters on both ends: a script decorates and uses functions, pickles
them, and a fresh interpreter (which never imported the script) loads and calls
them.  The receiver must get working functions with its own fresh state
(counters, memory cache, locks), while persistent state (a disk cache) is
shared as it would be between any two processes.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

HERE = Path(__file__).parent


def run(script: str, *args: str, cwd: Path) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter from ``cwd``; its JSON report."""
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_module_level_functions_pickle_by_reference() -> None:
    import picklable_functions as module  # noqa: PLC0415 - found through PYTHONPATH set here

    for name in ("square", "asquare", "doubled"):
        data = pickle.dumps(getattr(module, name))
        assert len(data) < 200  # a reference: module and name, no code, no state
        assert pickle.loads(data) is getattr(module, name)


def test_module_level_functions_work_in_another_process(tmp_path: Path) -> None:
    import picklable_functions as module  # noqa: PLC0415 - found through PYTHONPATH set here

    blob = tmp_path / "funcs.pkl"
    blob.write_bytes(pickle.dumps((module.square, module.asquare, module.doubled)))
    module.square(3)
    code = (
        "import asyncio, json, pickle, sys\n"
        "square, asquare, doubled = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "print(json.dumps([square(3), square(3), square.statistics().calls,\n"
        "                  square.statistics().cache_hits, asyncio.run(asquare(4)),\n"
        "                  doubled([1, 2])]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(blob)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [9, 9, 2, 1, 16, [2, 4]]


@pytest.mark.timeout(180)
def test_functions_from_main_travel_by_value_with_fresh_state(tmp_path: Path) -> None:
    blob, disk = tmp_path / "shipped.pkl", tmp_path / "disk-cache"
    # The script runs from tmp_path: the receiver cannot import it from its directory.
    used = run("ship_by_value.py", str(blob), str(disk), cwd=tmp_path)
    assert used["fetch"] == ["a via up", "a via up"]
    assert used["on_disk"] == 101

    received = run("receive.py", str(blob), cwd=tmp_path)
    assert received["fetch"] == ["a via up", "a via up", "b via up"]
    # Fresh counters and a fresh memory cache: the sender's hit and miss are not here.
    stats = received["fetch_stats"]
    assert (stats["calls"], stats["cache_hits"], stats["cache_misses"]) == (3, 1, 2)
    assert (stats["attempts"], stats["fallbacks"]) == (4, 2)
    assert received["afetch_is_coroutine_function"] is True
    assert received["afetch"] == [6, 6]
    assert (received["afetch_stats"]["calls"], received["afetch_stats"]["cache_hits"]) == (2, 1)
    # The disk cache is shared state: the receiver reads what the sender stored.
    assert received["on_disk"] == 101
    assert received["on_disk_stats"]["cache_hits"] == 1
    assert received["shared_limit"] == -3
    assert received["mapped"] == [10, 20, 10]
    assert received["mapped_stats"]["calls"] == 3
    assert received["mapped_in_processes"] == [2, 3]
    assert received["closure"] == 6
    assert received["method"] == 9
    assert (received["name"], received["wrapped"]) == ("fetch", "fetch")


def test_a_round_trip_in_one_process_gets_its_own_state() -> None:
    from opero import opero  # noqa: PLC0415

    runs: list[int] = []

    @opero(cache=True)
    def local(n: int) -> int:
        runs.append(n)
        return n + 1

    assert local(1) == 2
    copy = cloudpickle.loads(cloudpickle.dumps(local))
    assert copy is not local
    assert copy(1) == 2  # its own empty cache: computed again (in the copy's own list)
    assert copy.statistics().calls == 1
    assert local.statistics().calls == 1
    assert local(1) == 2  # the original's cache is untouched
    assert runs == [1]
