"""The fenced blocks of a Markdown page that the docs tests run (see test_examples.py).

The markers and the ``<!-- output -->`` rule are described in test_examples.py's
docstring; this module only finds the blocks, so the test module stays short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Example", "collect", "printed"]

ROOT = Path(__file__).resolve().parents[2]

_LANGUAGES = frozenset({"python", "py", "python3"})
_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<name>[a-z-]+)\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$")
_MARKERS = frozenset({"no-run", "own-process", "pytest"})
_OWN_PROCESS = re.compile(
    r"""__name__\s*==\s*["']__main__["']|mode\s*=\s*["'](?:async_)?process["']"""
)


@dataclass(frozen=True)
class Example:
    """One fenced Python block of a page."""

    path: Path
    #: 1-based line of the block's first line of code in its page.
    line: int
    source: str
    skip: str | None
    #: "here" (this process), "script" (a process of its own) or "pytest".
    how: str
    #: What the block prints, from the ``<!-- output -->`` block that follows it.
    output: str | None = None

    @property
    def name(self) -> str:
        page = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{page.as_posix()}:{self.line}"


def _markers(lines: list[str], fence_index: int, path: Path) -> dict[str, str]:
    """The ``<!-- name: reason -->`` comments right above the fence at ``fence_index``."""
    found: dict[str, str] = {}
    index = fence_index - 1
    while index >= 0 and (match := _MARKER.match(lines[index])):
        name = match.group("name")
        if name not in _MARKERS:
            break  # some other HTML comment: not ours
        reason = (match.group("reason") or "").strip()
        if name == "no-run" and not reason:
            msg = f"{path.name}:{index + 1}: <!-- no-run: ... --> needs a reason"
            raise ValueError(msg)
        found[name] = reason
        index -= 1
    return found


@dataclass(frozen=True)
class _Fence:
    """One fenced block of a page: where it opens and closes, its language, its text."""

    start: int
    end: int
    language: str
    text: str


def _fence(lines: list[str], index: int, path: Path) -> _Fence | None:
    """The fenced block that opens at ``lines[index]``, or None if no fence opens there."""
    opening = _OPEN.match(lines[index])
    if not opening:
        return None
    indent, fence = opening.group("indent"), opening.group("fence")
    info = opening.group("info").strip().lstrip("{").lstrip(".")
    closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    end = index + 1
    while end < len(lines) and not closing.match(lines[end]):
        end += 1
    if end == len(lines):
        msg = f"{path.name}:{index + 1}: the code fence is never closed"
        raise ValueError(msg)
    body = [
        line[len(indent) :] if line.startswith(indent) else line.lstrip()
        for line in lines[index + 1 : end]
    ]
    language = info.split()[0].lower() if info else ""
    return _Fence(start=index, end=end, language=language, text="\n".join(body) + "\n")


def _output_after(lines: list[str], end: int, path: Path) -> str | None:
    """The text of the next fenced block after ``end`` if it is marked ``<!-- output -->``."""
    for index in range(end + 1, len(lines)):
        marker = _MARKER.match(lines[index])
        if marker and marker.group("name") == "output":
            block = _fence(lines, index + 1, path) if index + 1 < len(lines) else None
            if block is None:
                msg = f"{path.name}:{index + 1}: <!-- output --> must come right above a fence"
                raise ValueError(msg)
            return block.text
        if _OPEN.match(lines[index]):
            return None  # the next block is not an output block
    return None


def collect(path: Path) -> list[Example]:
    """The Python blocks of one Markdown page, indented ones (tabs, admonitions) included."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples: list[Example] = []
    index = 0
    while index < len(lines):
        block = _fence(lines, index, path)
        if block is None:
            index += 1
            continue
        if block.language in _LANGUAGES:
            markers = _markers(lines, index, path)
            if "pytest" in markers:
                how = "pytest"
            elif "own-process" in markers or _OWN_PROCESS.search(block.text):
                how = "script"
            else:
                how = "here"
            examples.append(
                Example(
                    path=path,
                    line=index + 2,
                    source=block.text,
                    skip=markers.get("no-run"),
                    how=how,
                    output=_output_after(lines, block.end, path),
                )
            )
        index = block.end + 1
    return examples


def printed(text: str) -> list[str]:
    """``text``'s lines as the output check compares them: no trailing spaces or blank lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines
