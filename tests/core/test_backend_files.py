"""The disk and sqlite caches: where they live, how they store, and that they outlive a process."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from store_helpers import Backend

from opero import opero
from opero.core.backends.disk import user_cache_dir
from opero.testing import FakeClock


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def usual_umask() -> Iterator[None]:
    """The common umask 0o022, which would leave a plain mkdir at 0o755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_disk_directory_is_created_on_first_use_readable_by_owner_only(
    tmp_path: Path, clock: FakeClock
) -> None:
    directory = tmp_path / "deep" / "cache"

    @opero(cache=True, cache_backend="disk", cache_backend_config={"directory": str(directory)})
    def f(x: int) -> int:
        return x

    assert not directory.exists()  # decorating touches nothing
    with usual_umask():
        assert f(1) == 1
    assert directory.is_dir()
    assert mode(directory) == 0o700
    assert f.__opero__.cache.store.location == str(directory)


def test_sqlite_file_is_created_in_a_private_directory(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "db-dir" / "cache.db"

    @opero(cache=True, cache_backend="sqlite", cache_backend_config={"path": str(path)})
    def f(x: int) -> int:
        return x

    assert not path.parent.exists()
    with usual_umask():
        f(1)
    assert path.is_file()
    assert mode(path.parent) == 0o700


def test_sqlite_directory_setting_puts_the_file_in_it(tmp_path: Path, clock: FakeClock) -> None:
    @opero(cache=True, cache_backend="sqlite", cache_backend_config={"directory": str(tmp_path)})
    def f(x: int) -> int:
        return x

    f(1)
    location = Path(f.__opero__.cache.store.location)
    assert location.parent == tmp_path
    assert location.is_file()


@pytest.mark.parametrize(("backend", "tail"), [("disk", "disk"), ("sqlite", "sqlite")])
def test_default_location_is_the_user_cache_directory(
    backend: str, tail: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    # Point the user cache directory into tmp_path (honoured on Linux), so nothing real is touched.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    @opero(cache=True, cache_backend=backend)
    def f(x: int) -> int:
        return x

    location = Path(f.__opero__.cache.store.location)
    expected = user_cache_dir() / tail  # its conventions: tests/test_optional_extras.py
    assert "opero" in location.parts
    assert location == expected or location.parent == expected
    if location.is_relative_to(tmp_path):  # only ever write inside the test's own directory
        assert f(2) == 2
        assert f(2) == 2
        assert f.statistics().cache_hits == 1
        assert expected.is_dir()


def test_sqlite_uses_write_ahead_logging(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "cache.db"

    @opero(cache=True, cache_backend="sqlite", cache_backend_config={"path": str(path)})
    def f(x: int) -> int:
        return x

    f(1)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def sqlite_rows(path: Path) -> list[tuple[str, float | None]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT key, expires FROM opero_cache ORDER BY key").fetchall()


def test_sqlite_expiry_follows_the_clock_and_rows_keep_a_margin(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "cache.db"
    runs = 0

    @opero(
        cache=True, cache_backend="sqlite", cache_backend_config={"path": str(path)}, cache_ttl=10
    )
    def f(x: int) -> int:
        nonlocal runs
        runs += 1
        return x

    before = time.time()
    f(1)
    after = time.time()
    ((key, expires),) = sqlite_rows(path)
    # The row's own expiry (for purging) is real wall time + ttl + 60 s of margin ...
    assert expires is not None
    assert before + 70 <= expires <= after + 70
    # ... while opero's expiry is the clock's: 10 fake seconds make the entry stale.
    clock.advance(10)
    f(1)
    assert runs == 2
    assert [k for k, _ in sqlite_rows(path)] == [key]


def test_sqlite_entry_without_ttl_has_no_row_expiry(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "cache.db"
    opero(cache=True, cache_backend="sqlite", cache_backend_config={"path": str(path)})(abs)(-1)
    ((_, expires),) = sqlite_rows(path)
    assert expires is None


def expire_rows(path: Path, key: str | None = None) -> None:
    """Move the rows' own expiry (of one key, or all) into the past."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "UPDATE opero_cache SET expires = ? WHERE ? IS NULL OR key = ?",
            (time.time() - 1, key, key),
        )
        conn.commit()


def test_sqlite_read_deletes_an_expired_row(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "cache.db"
    runs = 0

    @opero(
        cache=True, cache_backend="sqlite", cache_backend_config={"path": str(path)}, cache_ttl=10
    )
    def f(x: int) -> int:
        nonlocal runs
        runs += 1
        return x

    f(1)
    f(2)
    key, other = (f.__opero__.cache.key((x,), {}) for x in (1, 2))
    assert sorted(k for k, _ in sqlite_rows(path)) == sorted([key, other])
    expire_rows(path, key)
    store = f.__opero__.cache.store
    assert store.get(key) is None
    assert [k for k, _ in sqlite_rows(path)] == [other]  # deleted by the read, the other kept
    assert store.get(other) is not None
    assert f(1) == 1  # and through the decorator: a miss, recomputed, stored again
    assert runs == 3
    ((_, expires),) = [row for row in sqlite_rows(path) if row[0] == key]
    assert expires is not None
    assert expires > time.time()


def test_sqlite_sweeps_expired_rows_every_256_writes(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "cache.db"

    @opero(
        cache=True, cache_backend="sqlite", cache_backend_config={"path": str(path)}, cache_ttl=5
    )
    def f(x: int) -> int:
        return x

    for x in range(255):
        f(x)
    expire_rows(path)
    assert len(sqlite_rows(path)) == 255
    f(255)  # the 256th write sweeps
    assert [k for k, _ in sqlite_rows(path)] == [f.__opero__.cache.key((255,), {})]


PROGRAM = """
import sys
from opero import opero

@opero(cache=True, cache_backend={backend!r}, cache_backend_config={config!r},
       cache_namespace={namespace!r})
def answer(x):
    with open({log!r}, "a") as log:
        log.write("ran\\n")
    return {{"answer": x * 2}}

print(answer(21)["answer"], answer.statistics().cache_hits)
"""


def test_entries_outlive_the_process(store_backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    program = textwrap.dedent(
        PROGRAM.format(
            backend=store_backend.name,
            config=store_backend.config,
            namespace=store_backend.namespace,
            log=str(log),
        )
    )

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", program],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return done.stdout.strip()

    assert run() == "42 0"
    assert log.read_text() == "ran\n"
    assert run() == "42 1"  # a hit in a new process
    assert log.read_text() == "ran\n"
    assert len(store_backend.raw_keys()) == 1


def test_config_for_the_same_place_shares_one_store(tmp_path: Path, clock: FakeClock) -> None:
    directory = tmp_path / "shared"
    config: dict[str, Any] = {"directory": str(directory)}
    a = opero(cache=True, cache_backend="disk", cache_backend_config=config)(abs)
    b = opero(
        cache=True,
        cache_backend="disk",
        cache_backend_config={"directory": str(tmp_path / "." / "shared")},
    )(round)
    assert a.__opero__.cache.store is b.__opero__.cache.store
