"""Files cut short under the cache: the call still answers, once warned, and heals."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from opero import opero
from opero.testing import FakeClock


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_truncated_disk_value_file_is_a_miss_and_is_rewritten(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "disk"
    runs = 0

    @opero(cache=True, cache_backend="disk", cache_backend_config={"directory": str(directory)})
    def blob(n: int) -> bytes:
        nonlocal runs
        runs += 1
        return bytes(range(256)) * n  # large: diskcache keeps it in a file of its own

    expected = bytes(range(256)) * 1000
    assert blob(1000) == expected
    files = list(directory.rglob("*.val"))
    assert len(files) == 1
    size = files[0].stat().st_size
    with files[0].open("r+b") as handle:
        handle.truncate(size // 2)
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert blob(1000) == expected
        assert runs == 2
        assert blob(1000) == expected
        assert runs == 2  # rewritten, and a hit again
    messages = _warnings(caplog)
    assert len(messages) == 1
    assert "corrupt" in messages[0]


def test_truncated_sqlite_file_calls_through_and_warns_once(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "one" / "cache.sqlite3"
    runs = 0

    @opero(cache=True, cache_backend="sqlite", cache_backend_config={"path": str(db)})
    def square(x: int) -> int:
        nonlocal runs
        runs += 1
        return x * x

    assert square(3) == 9
    store = square.__opero__.cache.store
    store.close()  # let the file be replaced under it, as another program might
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(db) + suffix)
        if path.exists():
            path.write_bytes(b"this is not a database" if suffix == "" else b"")
    with caplog.at_level(logging.WARNING, logger="opero"):
        for _ in range(4):
            assert square(3) == 9
    assert runs == 5  # the cache could not answer: the function ran every time
    messages = _warnings(caplog)
    assert len(messages) == 1
    assert "sqlite" in messages[0]
    assert square.statistics().cache_errors >= 1
