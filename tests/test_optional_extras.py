"""What works without the optional packages, and what a user is told when one is missing.

Each case runs in a child interpreter whose imports of the named packages fail (a
``sys.meta_path`` blocker), the way they fail where the package is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from opero.core.backends import disk

_BLOCKER = """
import sys


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def run_without(
    blocked: set[str], code: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``blocked`` cannot be imported."""
    script = f"BLOCKED = {sorted(blocked)!r}\n{_BLOCKER}\n{textwrap.dedent(code)}"
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_the_blocker_really_blocks() -> None:
    done = run_without({"tenacity"}, "import tenacity")
    assert done.returncode != 0
    assert "No module named 'tenacity'" in done.stderr


def test_retries_with_the_built_in_backoff_need_no_tenacity() -> None:
    done = run_without(
        {"tenacity"},
        """
        import sys
        from opero import opero

        calls = []

        @opero(retries=2, min_delay=0)
        def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError("reset")
            return "ok"

        assert flaky() == "ok" and len(calls) == 3
        assert "tenacity" not in sys.modules
        print("fine")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fine"


def test_wait_without_tenacity_names_the_extra_when_decorating() -> None:
    # A callable taking a tenacity RetryCallState needs tenacity to build that state;
    # without it the user hears so at decoration, not from inside a failing call.
    done = run_without(
        {"tenacity"},
        """
        from opero import ConfigurationError, opero

        try:
            @opero(retries=1, wait=lambda state: 0.0)
            def f() -> None:
                raise ConnectionError("reset")
        except ConfigurationError as exc:
            print(exc)
        else:
            print("decorated")
        """,
    )
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "wait=" in message
    assert 'pip install "opero[tenacity]"' in message


def test_the_sqlite_cache_needs_only_the_standard_library(tmp_path: Path) -> None:
    done = run_without(
        {"platformdirs", "diskcache", "tenacity", "redis"},
        """
        import os
        from pathlib import Path
        from opero import opero

        calls = []

        @opero(cache=True, cache_backend="sqlite")
        def f(x: int) -> int:
            calls.append(x)
            return x * 2

        assert f(2) == 4 and f(2) == 4 and calls == [2]
        print(f.__opero__.cache.store.location)
        """,
        env={"XDG_CACHE_HOME": str(tmp_path / "xdg")},
    )
    assert done.returncode == 0, done.stderr
    location = Path(done.stdout.strip())
    assert location == tmp_path / "xdg" / "opero" / "sqlite" / "opero-cache.sqlite3"
    assert location.is_file()


def test_the_disk_cache_names_its_extra_when_diskcache_is_missing() -> None:
    done = run_without(
        {"diskcache"},
        """
        from opero import ConfigurationError, opero

        try:
            @opero(cache=True, cache_backend="disk")
            def f(x: int) -> int:
                return x
            f(1)
        except ConfigurationError as exc:
            print(exc)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "opero[disk]"' in done.stdout
    assert "platformdirs" not in done.stdout


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_CACHE_HOME": "/xdg/cache"}, "/xdg/cache/opero"),
        ("linux", {}, "~/.cache/opero"),
        ("linux", {"XDG_CACHE_HOME": "  "}, "~/.cache/opero"),
        # The XDG spec: a relative path is invalid and is ignored.
        ("linux", {"XDG_CACHE_HOME": "relative/cache"}, "~/.cache/opero"),
        ("freebsd14", {"XDG_CACHE_HOME": "/xdg/cache"}, "/xdg/cache/opero"),
        ("darwin", {"XDG_CACHE_HOME": "/xdg/cache"}, "~/Library/Caches/opero"),
        # platformdirs' Windows layout: <LOCALAPPDATA>\<author>\<app>\Cache, author = app.
        (
            "win32",
            {"LOCALAPPDATA": "/Users/u/AppData/Local"},
            "/Users/u/AppData/Local/opero/opero/Cache",
        ),
        ("win32", {}, "~/AppData/Local/opero/opero/Cache"),
    ],
)
def test_user_cache_dir_follows_each_platform_convention(
    platform: str, env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert disk.user_cache_dir() == Path(expected).expanduser()
    assert disk.default_directory("sqlite") == Path(expected).expanduser() / "sqlite"


def test_user_cache_dir_is_where_platformdirs_puts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Caches made by earlier releases (which asked platformdirs) are found again.
    platformdirs = pytest.importorskip("platformdirs")
    assert disk.user_cache_dir() == Path(platformdirs.user_cache_dir("opero"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert disk.user_cache_dir() == Path(platformdirs.user_cache_dir("opero"))
