"""The public surface is small and pinned; import stays light."""

from __future__ import annotations

import pickle
import subprocess
import sys
from importlib.metadata import version

import opero
from opero import utils


def test_exports_are_pinned() -> None:
    assert sorted(opero.__all__) == sorted(
        [
            "AllFailedError",
            "AttemptRecord",
            "Breaker",
            "CacheKeyWarning",
            "CancelledItemError",
            "CandidateStatistics",
            "CircuitOpenError",
            "ConcurrencyError",
            "ConfigurationError",
            "DeadlineExceeded",
            "OperoError",
            "OperoFunction",
            "ResultRejected",
            "__version__",
            "clear_cache",
            "configure_logging",
            "correlation",
            "correlation_id",
            "opero",
            "opmap",
            "remaining",
        ]
    )
    for name in opero.__all__:
        assert getattr(opero, name) is not None
    assert utils.configure_logging is opero.configure_logging


def test_version_is_the_installed_version() -> None:
    assert opero.__version__ == version("opero")


def test_exception_hierarchy() -> None:
    assert issubclass(opero.OperoError, RuntimeError)
    for cls in (
        opero.AllFailedError,
        opero.ConfigurationError,
        opero.ConcurrencyError,
        opero.CancelledItemError,
        opero.CircuitOpenError,
    ):
        assert issubclass(cls, opero.OperoError)
    assert issubclass(opero.ConfigurationError, ValueError)


def test_all_failed_error_can_be_built_directly() -> None:
    errors = [ValueError("a"), KeyError("b")]
    error = opero.AllFailedError("All 2 attempts failed", errors=errors)
    assert error.errors == errors
    assert error.attempt_count == 2
    assert error.last_error is errors[-1]
    assert "1. ValueError: a" in str(error)
    assert opero.AllFailedError("nothing").errors == []


def test_all_failed_error_survives_pickling() -> None:
    error = opero.AllFailedError("All 1 attempts failed", errors=[ValueError("a")])
    clone = pickle.loads(pickle.dumps(error))
    assert clone.attempt_count == 1
    assert str(clone.errors[0]) == "a"


def test_import_does_not_load_optional_or_heavy_modules() -> None:
    code = (
        "import sys, opero; "
        "heavy = [m for m in ('asyncio', 'tenacity', 'tqdm', 'inspect', 'dataclasses', "
        "'multiprocessing', 'concurrent.futures', 'cloudpickle', "
        "'redis', 'diskcache', 'distributed', 'importlib.metadata') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_does_not_touch_the_root_logger() -> None:
    code = (
        "import logging; before = list(logging.getLogger().handlers); import opero; "
        "print(logging.getLogger().handlers == before, "
        "[type(h).__name__ for h in logging.getLogger('opero').handlers])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True ['NullHandler']"
