"""Every ``[text][opero.X]`` cross-reference in the docstrings and the docs resolves.

mkdocs-autorefs resolves such a reference only to an object the API page renders (a
``::: opero.X`` entry, or a member of a rendered module or class); some releases warn,
which fails ``mkdocs build --strict`` in CI, and others stay silent. Checked here from the
text, so a new setting whose docstring links an undocumented name fails in every run.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"\]\[(opero(?:\.\w+)+)\]")
RENDERED = re.compile(r"^::: (opero(?:\.\w+)+)", re.MULTILINE)


def _references() -> dict[str, str]:
    found: dict[str, str] = {}
    # The public decorators' docstrings (rendered in full on the API page) and the pages.
    decorators = sorted((ROOT / "src" / "opero" / "decorators").glob("*.py"))
    sources = [*decorators, *sorted((ROOT / "docs").glob("*.md"))]
    for path in sources:
        for target in REFERENCE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(target, str(path.relative_to(ROOT)))
    return found


def unresolved(references: dict[str, str], page: str) -> dict[str, str]:
    """The references no ``::: entry`` of ``page`` renders (itself, or as one of its members)."""
    rendered = set(RENDERED.findall(page))
    return {
        target: where
        for target, where in references.items()
        if target not in rendered and not any(target.startswith(f"{r}.") for r in rendered)
    }


def test_every_cross_reference_points_at_something_the_api_page_renders() -> None:
    references = _references()
    assert "opero.DeadlineExceeded" in references  # the scan finds the docstrings' links
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert unresolved(references, page) == {}


def test_an_unrendered_name_is_reported() -> None:
    page = "::: opero.testing\n::: opero.AllFailedError\n"
    references = {
        "opero.testing.FakeClock": "a",
        "opero.AllFailedError": "b",
        "opero.Breaker": "c",
    }
    assert unresolved(references, page) == {"opero.Breaker": "c"}
