"""What the API reference page needs from the sources and the site settings.

`mkdocs build --strict` (in .ci/run) proves the page builds; these checks keep the
things that made it look wrong from coming back: examples rendered as quotes,
signatures on one line, members of a mapped function missing.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _docs_extra() -> str:
    """The text of the ``docs = [...]`` extra in pyproject.toml, up to its closing bracket."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    start = re.search(r"^docs = \[", text, re.MULTILINE)
    assert start, "pyproject.toml has no docs extra"
    depth, index = 1, start.end()
    while depth:
        depth += {"[": 1, "]": -1}.get(text[index], 0)
        index += 1
    return text[start.end() : index - 1]


def test_docstring_examples_are_in_sections_griffe_reads_as_code() -> None:
    # griffe (mkdocstrings) reads doctests only under "Examples:"; under "Example:" they
    # became an admonition whose ">>>" lines rendered as nested blockquotes.
    singular = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "src" / "opero").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.fullmatch(r"\s*Example:\s*", line)
    ]
    assert not singular, f"use 'Examples:' (griffe's section name) at {singular}"


def test_the_docs_extra_brings_a_signature_formatter() -> None:
    # Without black or ruff, mkdocstrings prints every signature on one line.
    names = re.findall(r'"([A-Za-z0-9_.-]+)', _docs_extra())
    assert {"ruff", "black"} & set(names), names


def test_the_site_lays_out_signatures_and_loads_its_stylesheet() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+separate_signature: true$", config, re.MULTILINE)
    assert re.search(r"^\s+show_signature_annotations: true$", config, re.MULTILINE)
    line_length = re.search(r"^\s+line_length: (\d+)$", config, re.MULTILINE)
    assert line_length
    assert int(line_length.group(1)) <= 88
    sheets = re.findall(r"^extra_css:\n((?:  - .+\n)+)", config, re.MULTILINE)
    assert sheets, "mkdocs.yml loads no extra_css"
    for sheet in re.findall(r"- (\S+)", sheets[0]):
        assert (ROOT / "docs" / sheet).is_file(), sheet


def test_the_reference_documents_every_member_of_a_mapped_function() -> None:
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for member in ("imap", "imap_unordered", "statistics", "cache_clear"):
        assert re.search(rf"^#+ .*`f\.{member}\(", page, re.MULTILINE), member
        assert f"def {member}(" in page, member


def test_the_migration_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+- From opero 2\.x: migrating-from-2\.md$", config, re.MULTILINE)
