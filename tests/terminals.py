"""Run a child interpreter whose stderr (and, if asked, stdout) is a real terminal.

A pseudo-terminal from :mod:`pty` is what a user's shell gives a program, so
``isatty()`` is true in the child and tqdm sizes its bar from the window we set.
Used to check that progress bars are drawn on a terminal (and only there) and
that ``opero demo`` fits 80 columns.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Screen", "run_in_terminal", "visible_lines"]


@dataclass(frozen=True)
class Screen:
    """What the child wrote: ``terminal`` is every byte written to the pty, decoded."""

    terminal: str
    stdout: str
    code: int


def run_in_terminal(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    columns: int = 80,
    stdout_too: bool = False,
    timeout: float = 50,
) -> Screen:
    """Run ``python args...`` with stderr on a ``columns``-wide pty; stdout piped unless
    ``stdout_too`` (then both go to the terminal, as in a shell)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    # The caller's own TQDM_DISABLE would hide every bar: only a test's env may set it.
    child_env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    child_env.update({"COLUMNS": str(columns), **(env or {})})
    with subprocess.Popen(
        [sys.executable, *args],
        stdin=subprocess.DEVNULL,
        stdout=follower if stdout_too else subprocess.PIPE,
        stderr=follower,
        env=child_env,
    ) as child:
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        out = child.stdout.read().decode() if child.stdout is not None else ""
        code = child.wait(timeout=timeout)
    return Screen(b"".join(chunks).decode(errors="replace"), out, code)


def visible_lines(text: str) -> list[str]:
    """The lines a terminal shows: each ``\\r`` returns to the line's start.

    The pty turns ``\\n`` into ``\\r\\n``.  A frame overwrites the one before it
    character by character, and a longer earlier frame's tail stays visible, as on
    a real screen (tqdm pads its frames so that none does).
    """
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        shown = ""
        for frame in raw.split("\r"):
            shown = frame + shown[len(frame) :]
        lines.append(shown)
    return lines
