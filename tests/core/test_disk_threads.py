"""The disk and sqlite caches close each thread's sqlite connection when the thread ends.

Both stores give every thread its own sqlite3 connection.  Left in a bare
``threading.local`` (diskcache's way), the connection of an ended thread stays
open until some garbage collection drops it: open files pile up with every
short-lived thread, and Python 3.13 warns ``ResourceWarning: unclosed database``
(the suite failed on 3.13 that way, and users saw it under ``-X dev``).
These tests count the process's open files in the cache's directory
(``/proc/self/fd``) and catch the warnings a ``gc.collect()`` raises.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opero import opero
from opero.core.backends.base import ByteStore
from opero.core.backends.disk import DiskStore
from opero.core.backends.sqlite import SqliteStore

FD_DIR = Path("/proc/self/fd")
needs_proc = pytest.mark.skipif(not FD_DIR.is_dir(), reason="counts open files in /proc/self/fd")


def open_files_under(directory: Path) -> int:
    """How many of this process's file descriptors point into ``directory``."""
    prefix = str(directory.resolve()) + os.sep
    count = 0
    for fd in os.listdir(FD_DIR):
        try:
            target = os.readlink(FD_DIR / fd)
        except OSError:  # closed since listdir (the listing's own descriptor)
            continue
        count += target.startswith(prefix)
    return count


def resource_warnings_at_collection() -> list[str]:
    """Run ``gc.collect()``; the ResourceWarnings that finalizers raised meanwhile.

    A finalizer's warning cannot propagate: as an error it goes to
    ``sys.unraisablehook``, which is caught here for the collection only.
    """
    seen: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda report: seen.append(
        f"{report.exc_type.__name__}: {report.exc_value}"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = previous
    return [line for line in seen if "ResourceWarning" in line]


def in_threads(action: Callable[[], Any], count: int) -> list[Any]:
    """Run ``action`` in ``count`` threads, one after another, each ending before the next."""
    results: list[Any] = []
    for _ in range(count):
        thread = threading.Thread(target=lambda: results.append(action()))
        thread.start()
        thread.join()
    return results


@pytest.fixture(params=["disk", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ByteStore]:
    """A disk or sqlite store of its own in ``tmp_path / "cache"``."""
    directory = tmp_path / "cache"
    made: ByteStore = (
        DiskStore(directory) if request.param == "disk" else SqliteStore(directory / "c.sqlite3")
    )
    yield made
    made.close()


@needs_proc
def test_connections_of_ended_threads_are_closed(store: ByteStore, tmp_path: Path) -> None:
    store.set("k", b"v", None)  # this thread's connection, and the files, exist
    held_by_this_thread = open_files_under(tmp_path / "cache")

    assert in_threads(lambda: store.get("k"), 12) == [b"v"] * 12
    after_12 = open_files_under(tmp_path / "cache")
    assert in_threads(lambda: store.get("k"), 12) == [b"v"] * 12

    # Before the fix: 2 more open files per ended thread (database and WAL), 51
    # here.  SQLite may keep one closed connection's descriptor for reuse while
    # other connections have the file open (closing it would drop their locks).
    assert open_files_under(tmp_path / "cache") == after_12 <= held_by_this_thread + 1
    assert resource_warnings_at_collection() == []


@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_cached_calls_from_ended_threads_leave_nothing_to_warn_about(
    kind: str, tmp_path: Path
) -> None:
    """The user's view: a cached function called from threads that then end."""

    @opero(cache=True, cache_backend=kind, cache_backend_config={"directory": str(tmp_path)})
    def double(x: int) -> int:
        return 2 * x

    assert in_threads(lambda: double(21), 6) == [42] * 6
    assert double.statistics().cache_hits == 5
    assert resource_warnings_at_collection() == []
    double.__opero__.cache.store.close()


@needs_proc
def test_close_closes_every_threads_connection(store: ByteStore, tmp_path: Path) -> None:
    """``close()`` releases the files of live threads too; they reopen on next use."""
    store.set("k", b"v", None)
    used, go_on, reads = threading.Event(), threading.Event(), []

    def worker() -> None:
        reads.append(store.get("k"))
        used.set()
        go_on.wait(10)
        reads.append(store.get("k"))  # after close(): a new connection

    thread = threading.Thread(target=worker)
    thread.start()
    assert used.wait(10)
    try:
        store.close()
        # Before the fix the disk store closed only the calling thread's connection.
        assert open_files_under(tmp_path / "cache") == 0
    finally:
        go_on.set()
        thread.join(10)
    assert reads == [b"v", b"v"]
    assert resource_warnings_at_collection() == []


def test_a_thread_reuses_its_connection(store: ByteStore) -> None:
    """One connection per thread, not one per call (the hit cost depends on it)."""
    store.set("k", b"v", None)
    connections: Any = (
        store._cache._connections if isinstance(store, DiskStore) else store._connections  # type: ignore[attr-defined]
    )
    mine = connections.get()
    store.get("k")
    assert connections.get() is mine
    theirs = in_threads(connections.get, 1)[0]
    assert theirs is not mine


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_a_forked_child_opens_its_own_connection(kind: str, tmp_path: Path) -> None:
    """After a fork the child must not use its parent's sqlite connection (as diskcache)."""
    script = f"""
        import os, sys
        from pathlib import Path
        from opero.core.backends.disk import DiskStore
        from opero.core.backends.sqlite import SqliteStore
        directory = Path({str(tmp_path / "cache")!r})
        store = DiskStore(directory) if {kind!r} == "disk" else SqliteStore(directory / "c.sqlite3")
        store.set("parent", b"1", None)
        parents = store._cache._connections if {kind!r} == "disk" else store._connections
        mine = parents.get()
        pid = os.fork()
        if pid == 0:
            ok = parents.get() is not mine and store.get("parent") == b"1"
            store.set("child", b"2", None)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert parents.get() is mine
        assert store.get("child") == b"2"
        store.close()
    """
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "ResourceWarning" not in run.stderr


@pytest.mark.parametrize("kind", ["disk", "sqlite"])
def test_thread_map_with_a_store_cache_is_quiet_under_dev_mode(kind: str, tmp_path: Path) -> None:
    """``python -X dev`` shows every ResourceWarning; a thread map must cause none."""
    script = f"""
        from opero import opmap

        @opmap(mode="thread", workers=4, progress=False, cache=True,
               cache_backend={kind!r}, cache_backend_config={{"directory": {str(tmp_path)!r}}})
        def square(x: int) -> int:
            return x * x

        expected = [x * x for x in range(40)]
        assert square(list(range(40))) == expected  # misses, stored from 4 threads
        assert square(list(range(40))) == expected  # hits
        print("ok")
    """
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
    assert "ResourceWarning" not in run.stderr, run.stderr
