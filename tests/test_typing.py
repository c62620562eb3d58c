"""mypy --strict and pyright accept user code built on opero and reject its misuse.

``tests/typing/user_code.py`` (and ``check_signatures.py``) must pass both
checkers with no error; ``tests/typing/expected_errors.py`` must be flagged on
exactly its marked lines (see that file for the markers).  Each checker runs
once per session on all three files.  The user code is also run, so the
methods its types describe are shown to bind at run time as well.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import get_args

import pytest

from opero import opero
from opero.core.breaker_backend import BACKENDS as BREAKER_BACKENDS
from opero.core.cache import BACKENDS
from opero.core.rate_limit import SCOPES
from opero.core.serialize import SERIALIZERS
from opero.decorators.types import (
    BreakerBackend,
    CacheBackend,
    CacheSerializer,
    Mode,
    OperoSettings,
    RateLimitBackend,
    ScopeKind,
    StartMethod,
)

ROOT = Path(__file__).resolve().parents[1]
TYPING = ROOT / "tests" / "typing"
CLEAN = ("user_code.py", "check_signatures.py")
ERRORS = "expected_errors.py"
CHECKERS = ("mypy", "pyright")
#: ``# E: text``, ``# E: a | b`` or ``# E[mypy]: text`` (see expected_errors.py).
MARKER = re.compile(r"\s\s# E(?:\[(?P<checker>mypy|pyright)\])?: (?P<text>.+)$")
MYPY_LINE = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): error: (?P<message>.*)$")

Diagnostics = dict[str, dict[int, list[str]]]  # file name -> line -> messages


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, check=False, timeout=240
    )


def _mypy(files: list[Path]) -> Diagnostics:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    result = _run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes"]
        + ["--hide-error-context", "--no-pretty", "--warn-unused-ignores"]
        + [str(f.relative_to(ROOT)) for f in files]
    )
    found: Diagnostics = {}
    for line in result.stdout.splitlines():
        match = MYPY_LINE.match(line)
        if match:
            lines = found.setdefault(Path(match["path"]).name, {})
            lines.setdefault(int(match["line"]), []).append(match["message"])
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    return found


def _pyright(files: list[Path]) -> Diagnostics:
    if importlib.util.find_spec("pyright") is None:
        pytest.skip(
            "pyright is not installed: the test extra brings it "
            "(pip install -e '.[test]' installs pyright[nodejs], node included)"
        )
    env = {**os.environ, "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}
    env.pop("PYRIGHT_PYTHON_FORCE_VERSION", None)  # the pyright bundled in the wheel: no download
    result = _run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable]
        + ["-p", str(TYPING / "pyrightconfig.json")]
        + [str(f) for f in files],
        env=env,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright did not report: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    found: Diagnostics = {}
    for item in report["generalDiagnostics"]:
        if item["severity"] in ("error", "warning"):
            lines = found.setdefault(Path(item["file"]).name, {})
            message = f"{item['message']} ({item.get('rule', '')})".replace("\n", " ")
            lines.setdefault(item["range"]["start"]["line"] + 1, []).append(message)
    return found


_RUNNERS: dict[str, Callable[[list[Path]], Diagnostics]] = {"mypy": _mypy, "pyright": _pyright}


@pytest.fixture(scope="module", params=CHECKERS)
def checked(request: pytest.FixtureRequest) -> tuple[str, Diagnostics]:
    """One run of one checker over the clean files and the file of expected errors."""
    checker: str = request.param
    files = [TYPING / name for name in (*CLEAN, ERRORS)]
    return checker, _RUNNERS[checker](files)


def markers(checker: str) -> dict[int, list[str]]:
    """The lines of expected_errors.py that ``checker`` must flag, with accepted texts."""
    expected: dict[int, list[str]] = {}
    source = (TYPING / ERRORS).read_text().splitlines()
    for number, line in enumerate(source, start=1):
        match = MARKER.search(line)
        if match and match["checker"] in (None, checker):
            expected[number] = [text.strip() for text in match["text"].split(" | ")]
    return expected


@pytest.mark.timeout(300)
def test_user_code_passes_the_checker(checked: tuple[str, Diagnostics]) -> None:
    checker, found = checked
    errors = {name: found[name] for name in CLEAN if name in found}
    assert not errors, f"{checker} rejects user code: {json.dumps(errors, indent=1)}"


@pytest.mark.timeout(300)
def test_checker_flags_exactly_the_marked_lines(checked: tuple[str, Diagnostics]) -> None:
    checker, found = checked
    expected = markers(checker)
    assert len(expected) >= 40  # the file is read, and marks this checker's cases
    got = found.get(ERRORS, {})
    missed = {
        line: texts
        for line, texts in expected.items()
        if not any(text in message for text in texts for message in got.get(line, []))
    }
    unexpected = {line: messages for line, messages in got.items() if line not in expected}
    report = {
        "marked but not flagged (or flagged for another reason)": {
            line: {"expected": expected[line], "got": got.get(line, [])} for line in missed
        },
        "flagged but not marked": unexpected,
    }
    assert not missed, f"{checker}: {json.dumps(report, indent=1)}"
    assert not unexpected, f"{checker}: {json.dumps(report, indent=1)}"


def test_mypy_flags_static_methods_read_from_an_instance_and_pyright_does_not() -> None:
    """What mypy does with ``@staticmethod`` over ``@opero``, pinned by the markers."""
    source = (TYPING / ERRORS).read_text().splitlines()
    only_mypy = [n for n, line in enumerate(source, 1) if "  # E[mypy]:" in line]
    assert len(only_mypy) == 2
    assert "tools.double(2)" in source[only_mypy[0] - 1]
    assert "tools.adouble(2)" in source[only_mypy[1] - 1]
    assert all(n not in markers("pyright") for n in only_mypy)


# --- the same code at run time ---------------------------------------------------------


def _load_user_code() -> ModuleType:
    spec = importlib.util.spec_from_file_location("opero_typing_user_code", TYPING / CLEAN[0])
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_code_runs() -> None:
    user_code = _load_user_code()
    user_code.run_module_functions()
    user_code.run_methods()
    user_code.run_sync_maps()
    user_code.run_async_maps()
    user_code.run_error_context()
    user_code.run_correlation_async()


def test_decorated_functions_bind_as_methods_at_run_time() -> None:
    class Service:
        def __init__(self, name: str) -> None:
            self.name = name

        @opero(retries=1)
        def greet(self, other: str) -> str:
            return f"{self.name}>{other}"

        @opero
        async def agreet(self, other: str) -> str:
            return f"{self.name}>>{other}"

        @classmethod
        @opero
        def named(cls, name: str) -> Service:
            return cls(name)

        @staticmethod
        @opero
        def double(x: int) -> int:
            return 2 * x

    service = Service("a")
    assert inspect.ismethod(service.greet)
    assert service.greet.__self__ is service
    assert service.greet("b") == "a>b"
    assert Service.greet(service, "c") == "a>c"
    assert asyncio.run(service.agreet("b")) == "a>>b"
    assert inspect.ismethod(Service.named)
    assert Service.named.__self__ is Service
    assert Service.named("n").name == "n"
    assert service.named("m").name == "m"
    assert Service.double(2) == service.double(2) == 4
    assert service.greet.statistics().calls == 2  # the bound method reaches the function's
    assert service.greet.statistics is Service.__dict__["greet"].statistics
    service.named.cache_clear()


# --- the types stay in step with what the code accepts ---------------------------------


def test_opmap_settings_type_lists_every_opero_parameter() -> None:
    parameters = inspect.signature(opero).parameters
    settings = {n: p.annotation for n, p in parameters.items() if n != "func"}
    typed = {n: ref.__forward_arg__ for n, ref in OperoSettings.__annotations__.items()}
    assert typed == settings


def test_literal_types_name_exactly_the_accepted_strings() -> None:
    opmap_module = importlib.import_module("opero.decorators.opmap")
    assert set(get_args(CacheBackend)) == set(BACKENDS)
    assert set(get_args(CacheSerializer)) == set(SERIALIZERS)
    assert set(get_args(Mode)) == set(opmap_module.MODES)
    assert set(get_args(StartMethod)) == set(opmap_module._START_METHODS)
    assert set(get_args(ScopeKind)) == set(SCOPES)
    assert set(get_args(BreakerBackend)) == set(BREAKER_BACKENDS)
    for backend in get_args(RateLimitBackend):
        opero(rate_limit=1, rate_limit_backend=backend)
    with pytest.raises(ValueError, match="rate_limit_backend"):
        opero(rate_limit=1, rate_limit_backend="disk")  # type: ignore[call-overload]
