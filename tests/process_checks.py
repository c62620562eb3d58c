"""Checks on processes for the tests that start and kill them (parent side only)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path


def wait_until_gone(pids: Iterable[int], within: float = 2.0) -> set[int]:
    """The pids still alive after waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if is_alive(pid)}
        if alive:
            time.sleep(0.05)
    return alive


def is_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not reaped yet) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
