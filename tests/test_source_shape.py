"""The shape of the source stays as issue 12 left it: short modules and functions, no import
circles, and mypy --strict clean with the optional ``distributed`` installed and without it.

These read the source as text and as a syntax tree (nothing is imported), so a module that
grows past the limits fails here, with its name and size, before review has to catch it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "opero"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_every_module_is_at_most_300_lines() -> None:
    long = {
        _name(path): lines
        for path in _modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert _modules(), "no source found"
    assert long == {}


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its signature and docstring aside."""
    body = node.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and len(body) > 1
    ):
        body = body[1:]
    end = body[-1].end_lineno or body[-1].lineno
    return end - body[0].lineno + 1


def test_every_function_body_is_at_most_60_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = _body_lines(node)
                if lines > MAX_FUNCTION_LINES:
                    long[f"{_name(path)}:{node.lineno} {node.name}"] = lines
    assert long == {}


def test_the_body_count_leaves_out_the_docstring_only() -> None:
    tree = ast.parse('def f():\n    """Doc.\n\n    More."""\n    a = 1\n    return a\n')
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    assert _body_lines(function) == 2


def _module_level_imports(path: Path) -> Iterator[str]:
    """The opero modules ``path`` imports when it is imported (not under TYPE_CHECKING, not
    inside a function: those run later, so they cannot close a circle at import time)."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("opero"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("opero"):
                yield base
                for alias in node.names:  # `from opero.core import clock` imports a module
                    yield f"{base}.{alias.name}"


def _import_graph() -> dict[str, set[str]]:
    known = {_name(path) for path in _modules()}
    return {
        _name(path): {name for name in _module_level_imports(path) if name in known} - {_name(path)}
        for path in _modules()
    }


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, once (strongly connected components with more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    graph = _import_graph()
    assert "opero.core.flow" in graph["opero.core.shell"]  # the graph is really built
    # Package __init__ modules re-export their children; a child importing a sibling through
    # the package is not a circle at import time, so only module-to-module edges count.
    modules = {
        name: {
            t for t in targets if not (PACKAGE / Path(*t.split(".")[1:]) / "__init__.py").exists()
        }
        for name, targets in graph.items()
        if not (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists()
    }
    assert _circles(modules) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _without_distributed(tmp_path: Path) -> Path:
    """A Python whose site-packages hold everything installed here except ``distributed``."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith("distributed"):
            (target / entry.name).symlink_to(entry)
    return python


@pytest.mark.timeout(300)
@pytest.mark.parametrize("distributed", ["installed", "absent"])
def test_mypy_strict_passes_with_and_without_distributed(distributed: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("distributed is not installed (the [dask] extra)")
    command = [sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"]
    if distributed == "absent":
        python = _without_distributed(tmp_path)
        hidden = subprocess.run(
            [str(python), "-c", "import distributed"], capture_output=True, check=False
        )
        assert hidden.returncode != 0, "distributed is still importable"
        command += ["--python-executable", str(python), "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "MYPY_FORCE_COLOR": "0"}
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=280, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_architecture_page_names_every_module() -> None:
    # A newcomer finds each file's one job on docs/architecture.md; a new module must be added.
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set()
    for path in _modules():
        relative = path.relative_to(PACKAGE)
        if path.name == "__init__.py" or relative.parts[:2] == ("core", "backends"):
            continue  # packages re-export; the backends have one row, `core/backends/`
        named.add(str(relative))
    assert "`core/backends/`" in page
    missing = sorted(
        name
        for name in named
        if f"`{name}`" not in page
        and f"`{Path(name).name}`" not in page  # a row may list siblings by file name
    )
    assert missing == []
