"""The map engine's shape: no import circles, a frozen plan, modules of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import opero.concurrency

PACKAGE = Path(opero.concurrency.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every opero.concurrency module ``path`` imports, anywhere (typing-only ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "opero.concurrency":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("opero.concurrency."):
                found.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("opero.concurrency."):
                    found.add(alias.name.rsplit(".", 1)[1])
    return found


def test_no_import_circles_in_the_map_engine() -> None:
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}

    def visit(module: str, trail: tuple[str, ...]) -> None:
        if module in trail:
            pytest.fail("import circle: " + " -> ".join((*trail[trail.index(module) :], module)))
        for imported in graph.get(module, ()):
            visit(imported, (*trail, module))

    for module in graph:
        visit(module, ())


def test_the_map_plan_is_frozen() -> None:
    from opero import opmap  # noqa: PLC0415

    plan = opmap(progress=False)(abs).__opmap__
    with pytest.raises(AttributeError):
        plan.workers = 99
    assert plan.workers == 4


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_stay_under_300_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 300
