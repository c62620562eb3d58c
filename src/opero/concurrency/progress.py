"""How a map shows its progress: a bar on a terminal, at most one line anywhere else.

tqdm's own convention (``disable=None``): a bar is for a person watching a
terminal.  On anything else (a CI log, a pipe, pytest's capture, the stderr of
a program that calls a library that maps) each redraw would stay in the text
as one more ``\\r`` frame, so no bar is drawn there.  A map asked for progress
explicitly (``progress=True``) writes one line at its end instead::

    fetch: 200 items, 3 failed, 1.24 s

``TQDM_DISABLE`` (any non-empty value, as tqdm reads it) silences both: the
variable is tqdm's switch for every bar of a run, and a user who sets it wants
no progress output at all.  tqdm itself applies it only to arguments a caller
leaves out, which is why ``disable=`` is never passed here.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

__all__ = ["Meter", "Progress", "meter"]


@dataclass(frozen=True, slots=True)
class Progress:
    """A map's progress settings, fixed at decoration time."""

    #: The function's name: the bar's ``desc`` and the summary line's first word.
    label: str
    #: When stderr is not a terminal: one summary line at the end (True) or nothing.
    summary: bool


class Meter(Protocol):
    """What a map tells as it runs; told once per batch, so its cost is per chunk."""

    def advance(self, done: int, failed: int) -> None:
        """``done`` more items have an outcome, ``failed`` of them an exception."""

    def close(self) -> None:
        """The map has ended (finished, stopped or abandoned)."""


def meter(spec: Progress | None, total: int | None, *, unit: str = "item") -> Meter | None:
    """The bar or summary for one run, or None when nothing is to be shown.

    Decided when the run starts, from the stderr of that moment, as tqdm does.
    """
    if spec is None or os.environ.get("TQDM_DISABLE"):
        return None
    stream = sys.stderr
    if stream is None:  # pythonw, or a closed stderr
        return None
    if _is_terminal(stream) or _in_notebook():
        return _Bar(spec.label, total, unit, stream)
    if spec.summary:
        return _Summary(spec.label, total, unit, stream)
    return None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def _in_notebook() -> bool:
    """A Jupyter kernel: its stderr is no terminal, yet tqdm.auto shows a widget there."""
    if "ipykernel" not in sys.modules:  # the cheap test first: no kernel, no tqdm import
        return False
    return any(c.__module__ == "tqdm.notebook" for c in _bar_class().__mro__)


class _Bar:
    """A tqdm.auto bar labelled with the function's name; failures in its postfix."""

    __slots__ = ("bar", "failed")

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO) -> None:
        self.bar = _bar_class()(total=total, desc=label, unit=unit, mininterval=0.2, file=stream)
        self.failed = 0

    def advance(self, done: int, failed: int) -> None:
        if failed:  # before the update, so the line it draws has the new count
            self.failed += failed
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(done)

    def close(self) -> None:
        self.bar.close()


class _Summary:
    """Counts, then one line at the end; no output while the map runs."""

    __slots__ = ("done", "failed", "label", "started", "stream", "total", "unit")

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream: TextIO | None = stream
        self.done = self.failed = 0
        self.started = time.perf_counter()

    def advance(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is None:  # written already
            return
        total = self.done if self.total is None else self.total
        done = "" if self.done == total else f"{self.done} of "  # stopped or abandoned
        unit = self.unit if total == 1 else f"{self.unit}s"
        seconds = time.perf_counter() - self.started
        line = f"{self.label}: {done}{total} {unit}, {self.failed} failed, {seconds:.2f} s\n"
        # Progress is a courtesy: a closed or broken stderr must not fail a finished map.
        with contextlib.suppress(OSError, ValueError):
            stream.write(line)
            stream.flush()


@functools.cache
def _bar_class() -> Any:
    """tqdm.auto's bar (a widget in notebooks) without the monitor thread each bar would start.

    Updates come once per chunk, so the bar needs no watchdog to stay fresh, and
    a thread started and joined per map would cost more than the updates.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415 - only when a bar is drawn

    return type("OperoBar", (tqdm,), {"monitor_interval": 0})
