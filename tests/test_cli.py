"""The ``opero`` console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opero.cli import main
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
