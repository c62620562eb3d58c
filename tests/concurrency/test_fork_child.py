"""A forked child that uses a map its parent used builds its own pools (issue 10, item 7).

The child inherits the parent's pools as dead copies (their threads stayed in
the parent, their queues lead to the parent's workers); before the fix it
waited on them for ever.  Each test forks for real, lets the child run the map
and exit with a code saying whether the results were right, and kills a child
that does not finish in time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from worker_helpers import pid_after, run_script, square, write_script

from opero import opmap
from process_checks import wait_until_gone

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Fork in a threaded parent warns on Python 3.12+; forking is what these tests are about.
    pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks"),
]

ITEMS = list(range(12))
EXPECTED = [x * x for x in ITEMS]
#: A hung child is killed after this long; a healthy one takes well under a second.
PATIENCE = 30.0


def in_forked_child(work: Callable[[], bool], *, report: int | None = None) -> int:
    """Run ``work`` in an ``os.fork()`` child: its exit code (0: it returned True).

    The child leaves with ``os._exit``, so nothing of pytest runs there.  A child
    still running after ``PATIENCE`` seconds is killed and the test fails.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its exit code is the result
        code = 3
        try:
            code = 0 if work() else 1
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    if report is not None:
        os.close(report)
    return wait_for_child(pid)


def wait_for_child(pid: int) -> int:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {PATIENCE} s (waiting on its parent's pool)")


MAPS = {
    "thread": {"mode": "thread"},
    "process": {"mode": "process"},
    "process-fork": {"mode": "process", "start_method": "fork"},
    "process-spawn": {"mode": "process", "start_method": "spawn"},
    # The parent-side cache and rate limiter are inherited too, and keep working.
    "thread-cache-rate": {"mode": "thread", "cache": True, "rate_limit": 10_000},
    "process-cache-rate": {"mode": "process", "cache": True, "rate_limit": 10_000},
}


@pytest.mark.parametrize("settings", MAPS.values(), ids=list(MAPS))
def test_forked_child_runs_the_map_its_parent_used(settings: dict[str, Any]) -> None:
    mapped = opmap(workers=2, progress=False, **settings)(square)
    assert mapped(ITEMS) == EXPECTED  # the parent's pool exists and is warm

    assert in_forked_child(lambda: mapped(ITEMS) == EXPECTED) == 0
    assert mapped(ITEMS) == EXPECTED  # and the parent's pool still works


async def asquare(x: int) -> int:
    return x * x


def test_forked_child_runs_an_async_process_map() -> None:
    mapped = opmap(mode="async_process", workers=2, progress=False)(asquare)
    assert asyncio.run(mapped(ITEMS)) == EXPECTED

    assert in_forked_child(lambda: asyncio.run(mapped(ITEMS)) == EXPECTED) == 0


def map_in_child(mode: str) -> None:
    """The target of a ``multiprocessing`` fork child: exit 0 if the map gave the right results."""
    mapped = SHARED[mode]
    os._exit(0 if mapped(ITEMS) == EXPECTED else 1)


SHARED = {
    mode: opmap(mode=mode, workers=2, progress=False)(square) for mode in ("thread", "process")
}


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_multiprocessing_fork_child_runs_the_map(mode: str) -> None:
    mapped = SHARED[mode]
    assert mapped(ITEMS) == EXPECTED
    child = multiprocessing.get_context("fork").Process(target=map_in_child, args=(mode,))
    child.start()
    child.join(PATIENCE)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail(f"the fork child hung for {PATIENCE} s")
    assert child.exitcode == 0


def test_registry_lock_held_at_fork_time() -> None:
    """A parent thread inside the pool registry when the fork happens: the child does not wait."""
    from opero.concurrency import pool  # noqa: PLC0415

    mapped = opmap(mode="thread", workers=2, progress=False)(square)
    assert mapped(ITEMS) == EXPECTED
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pool._pools().lock:
            holding.set()
            release.wait(PATIENCE)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        assert in_forked_child(lambda: mapped(ITEMS) == EXPECTED) == 0
    finally:
        release.set()
        holder.join()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_fork_while_the_parent_is_mapping(mode: str) -> None:
    """Another parent thread is in the middle of a map at the fork: both maps come out right."""
    mapped = opmap(mode=mode, workers=2, chunk_size=1, progress=False)(pid_after)
    running: dict[str, Any] = {}
    parent_map = threading.Thread(target=lambda: running.update(out=mapped([0.1] * 8)))
    parent_map.start()
    try:
        time.sleep(0.15)  # the parent's items are in flight now
        assert in_forked_child(lambda: len(mapped([0.0] * 4)) == 4) == 0
    finally:
        parent_map.join(PATIENCE)
    assert not parent_map.is_alive()
    assert all(isinstance(pid, int) for pid in running["out"])


def test_child_workers_end_with_the_child() -> None:
    """A child that leaves with ``os._exit`` (no shutdown) leaves no worker processes behind."""
    mapped = opmap(mode="process", workers=2, progress=False)(pid_after)
    mapped([0.0])
    read_end, write_end = os.pipe()

    def child() -> bool:
        os.close(read_end)
        pids = set(mapped([0.05] * 8))
        os.write(write_end, ",".join(map(str, pids)).encode())
        return True

    assert in_forked_child(child, report=write_end) == 0
    with os.fdopen(read_end, "rb") as reader:
        workers = {int(pid) for pid in reader.read().decode().split(",")}
    assert workers
    assert wait_until_gone(workers, within=10) == set()


def test_pool_workers_end_when_their_owner_is_killed(tmp_path: Path) -> None:
    """Not only after a fork: a process killed without cleanup takes its workers along."""
    script = write_script(
        tmp_path,
        """
        import os, signal
        from opero import opmap

        def pid(_):
            return os.getpid()

        if __name__ == "__main__":
            pids = set(opmap(mode="process", workers=2, progress=False)(pid)(range(8)))
            print(",".join(map(str, pids)), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    result = run_script(script)
    workers = {int(pid) for pid in result.stdout.strip().split(",")}
    assert workers
    assert wait_until_gone(workers, within=10) == set()


def test_forked_child_exits_cleanly(tmp_path: Path) -> None:
    """A child that ends normally (atexit runs) shuts down its own pool, none of its parent's."""
    script = write_script(
        tmp_path,
        """
        import os, signal, sys, time
        from opero import opmap

        def square(x):
            return x * x

        if __name__ == "__main__":
            mapped = opmap(mode="process", workers=2, progress=False)(square)
            assert mapped(range(6)) == [0, 1, 4, 9, 16, 25]
            pid = os.fork()
            if pid == 0:
                sys.exit(0 if mapped(range(6)) == [0, 1, 4, 9, 16, 25] else 1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    print("child", os.waitstatus_to_exitcode(status))
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
                print("child hung")
            print("parent", mapped(range(3)))
        """,
    )
    result = run_script(script, timeout=60)
    assert result.stdout.split("\n")[:2] == ["child 0", "parent [0, 1, 4]"], result.stderr
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_dask_fetch_threads_are_the_childs_own() -> None:
    """The Dask relay's threads are rebuilt in a child too (no cluster needed to see it)."""
    from opero.concurrency import cluster  # noqa: PLC0415

    inherited = cluster._fetchers()
    assert inherited.submit(square, 3).result(timeout=5) == 9

    def child() -> bool:
        own = cluster._fetchers()
        return own is not inherited and own.submit(square, 4).result(timeout=5) == 16

    assert in_forked_child(child) == 0
