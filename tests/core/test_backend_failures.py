"""A cache that fails never fails the call: unusable directories and corrupt entries.

Each failure is logged once at WARNING for its store, counted in
``statistics().cache_errors``, and answered as a miss.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from store_helpers import Backend, opero_warnings, store_warnings

from opero import opero
from opero.testing import FakeClock

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def unusable_under_a_file(tmp_path: Path) -> Path:
    """A path whose parent is a regular file: mkdir fails even for root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return blocker / "cache"


def unusable_read_only(tmp_path: Path) -> Path:
    """A path inside a directory its owner may not write (root ignores this)."""
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    return parent / "cache"


@pytest.fixture(
    params=[
        pytest.param(unusable_under_a_file, id="parent-is-a-file"),
        pytest.param(
            unusable_read_only,
            id="read-only-parent",
            marks=pytest.mark.skipif(IS_ROOT, reason="root may write to a 0o500 directory"),
        ),
    ]
)
def unusable_directory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    path = request.param(tmp_path)
    yield path
    if path.parent.is_dir():
        path.parent.chmod(0o700)  # let pytest remove it


@pytest.mark.parametrize("backend", ["disk", "sqlite"])
def test_unusable_directory_degrades_to_uncached_calls(
    backend: str,
    unusable_directory: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = (
        {"directory": str(unusable_directory)}
        if backend == "disk"
        else {"path": str(unusable_directory / "cache.db")}
    )
    runs = 0

    @opero(cache=True, cache_backend=backend, cache_backend_config=config)
    def double(x: int) -> int:
        nonlocal runs
        runs += 1
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="opero"):
        for x in (1, 1, 2, 1, 2, 1):
            assert double(x) == 2 * x
            clock.advance(1)  # past the store's cool-down: it is tried again
    assert runs == 6
    assert len(store_warnings(caplog, double)) == 1
    assert len(opero_warnings(caplog)) == 1
    stats = double.statistics()
    assert stats.cache_errors >= 2  # tried again after the cool-down, failed again
    assert (stats.cache_hits, stats.cache_misses) == (0, 6)
    assert not unusable_directory.exists()


def test_store_cool_down_skips_the_store(
    unusable_directory: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    @opero(
        cache=True,
        cache_backend="disk",
        cache_backend_config={"directory": str(unusable_directory)},
    )
    def f(x: int) -> int:
        return x

    for x in range(5):  # no time passes: after the first failure the store is not asked
        assert f(x) == x
    assert f.statistics().cache_errors == 1
    clock.advance(0.5)
    f(0)
    assert f.statistics().cache_errors == 2


GARBAGE = [
    pytest.param(b"junk", id="junk"),
    pytest.param(b"garbage", id="garbage"),
    pytest.param(b"OP1p" + bytes(8) + b"junk after a good header", id="bad-payload"),
    pytest.param(b"\x00" * 200, id="zeros"),
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_corrupt_entry_is_a_miss_and_gets_rewritten(
    store_backend: Backend, garbage: bytes, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = store_backend.private()
    runs = 0

    @opero(**backend.kwargs())
    def f(x: int) -> list[int]:
        nonlocal runs
        runs += 1
        return [x, x]

    assert f(4) == [4, 4]
    (key,) = backend.raw_keys()
    good = backend.raw_get(key)
    backend.raw_set(key, garbage)
    assert backend.raw_get(key) == garbage
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert f(4) == [4, 4]
        assert runs == 2
        assert backend.raw_get(key) == good  # recomputed and stored again
        assert f(4) == [4, 4]
        assert runs == 2
    warnings = store_warnings(caplog, f)
    assert len(warnings) == 1
    assert "corrupt" in warnings[0].getMessage()
    assert len(opero_warnings(caplog)) == 1
    stats = f.statistics()
    assert stats.cache_errors >= 1
    assert stats.cache_hits == 1


def test_corrupt_entries_warn_once_per_store(
    store_backend: Backend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = store_backend.private()

    @opero(**backend.kwargs())
    def f(x: int) -> int:
        return x

    for x in range(3):
        f(x)
    keys = backend.raw_keys()
    assert len(keys) == 3
    with caplog.at_level(logging.WARNING, logger="opero"):
        for key in keys:
            backend.raw_set(key, b"junk")
        for x in range(3):
            assert f(x) == x
    assert len(store_warnings(caplog, f)) == 1
    assert f.statistics().cache_misses == 6
