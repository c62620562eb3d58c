"""The ``opero`` console script."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import opero as opero_package
from opero import opero
from opero.cli import main
from opero.core.backends.sqlite import SqliteStore


def test_demo_passes_quick_to_the_tour(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []

    def fake_tour(*, quick: bool) -> int:
        calls.append(quick)
        return 0

    monkeypatch.setattr("opero.demo.run_tour", fake_tour)
    assert main(["demo", "--quick"]) == 0
    assert main(["demo"]) == 0
    assert calls == [True, False]


def test_demo_help_offers_quick(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_other_commands_do_not_load_the_tour() -> None:
    # The tour's modules (and http.server) load only for `opero demo`.
    code = (
        "import sys; from opero.cli import main; main(['version']); "
        "print(sorted(m for m in ('opero.demo', 'opero._demo_server', 'http.server', 'tqdm')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("opero", path=str(Path(sys.executable).parent)) or shutil.which("opero")
    assert exe is not None
    out = subprocess.run([exe, "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip()


def test_version_flag_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    # `opero --version` is what users type first; `opero version` stays for scripts.
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"opero {opero_package.__version__}\n"
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"{opero_package.__version__}\n"


def test_version_flag_of_the_console_script() -> None:
    exe = shutil.which("opero", path=str(Path(sys.executable).parent)) or "opero"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"opero {opero_package.__version__}\n"
    assert (
        "--version"
        in subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    )


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
