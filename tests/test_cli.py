"""The ``opero`` console script."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opero import opero
from opero.cli import main
from opero.core.backends.sqlite import SqliteStore
from opero.testing import no_waits


def test_demo_runs_and_reports_each_layer(capsys: pytest.CaptureFixture[str]) -> None:
    with no_waits():  # the demo's backoff and rate-limit waits take no time here
        assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "retry 1 after ConnectionError" in out
    assert "weather: answered" in out
    assert "fallbacks used: 1" in out
    assert "the function ran 1 time(s); cache hits: 1" in out
    assert "AllFailedError with 4 errors" in out
    assert "revoked-primary" not in out
    assert "backup-key" not in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("opero", path=str(Path(sys.executable).parent)) or shutil.which("opero")
    assert exe is not None
    out = subprocess.run([exe, "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip()


def _fill_sqlite(path: Path) -> None:
    @opero(
        cache=True,
        cache_backend="sqlite",
        cache_backend_config={"path": str(path)},
        cache_namespace="alpha",
    )
    def a(x: int) -> int:
        return x

    @opero(
        cache=True,
        cache_backend="sqlite",
        cache_backend_config={"path": str(path)},
        cache_namespace="beta",
    )
    def b(x: int) -> int:
        return x

    for i in range(3):
        a(i)
    b(1)


def test_cache_stats_and_clear_one_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "c.sqlite3"
    _fill_sqlite(db)
    assert main(["cache", "stats", "--backend", "sqlite", "--path", str(db)]) == 0
    out = capsys.readouterr().out
    assert "entries:    4" in out
    assert "alpha: 3" in out
    assert "beta: 1" in out
    assert (
        main(
            [
                "cache",
                "clear",
                "--backend",
                "sqlite",
                "--path",
                str(db),
                "--namespace",
                "alpha",
                "--yes",
            ]
        )
        == 0
    )
    assert "cleared 3 entries" in capsys.readouterr().out
    assert main(["cache", "stats", "--backend", "sqlite", "--path", str(db)]) == 0
    out = capsys.readouterr().out
    assert "entries:    1" in out
    assert "alpha" not in out


def test_cache_clear_refuses_without_yes_when_not_interactive(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite3"
    _fill_sqlite(db)
    exe = shutil.which("opero", path=str(Path(sys.executable).parent)) or "opero"
    result = subprocess.run(
        [exe, "cache", "clear", "--backend", "sqlite", "--path", str(db)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 1
    assert "--yes" in result.stderr
    stats = subprocess.run(
        [exe, "cache", "stats", "--backend", "sqlite", "--path", str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "entries:    4" in stats.stdout


@pytest.mark.parametrize(("answer", "left"), [("y\n", 0), ("n\n", 4)])
def test_cache_clear_asks_on_a_terminal(tmp_path: Path, answer: str, left: int) -> None:
    db = tmp_path / "c.sqlite3"
    _fill_sqlite(db)
    exe = shutil.which("opero", path=str(Path(sys.executable).parent)) or "opero"
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [exe, "cache", "clear", "--backend", "sqlite", "--path", str(db)],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.write(leader, answer.encode())
        proc.communicate(timeout=30)
    finally:
        os.close(leader)
        os.close(follower)
    store = SqliteStore(db)
    try:
        assert store.stats("opero:cache:")["entries"] == left
    finally:
        store.close()


def test_cache_help_lists_actions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["cache", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "stats" in out
    assert "clear" in out
