"""Helpers for the process-pool tests: functions workers import, child scripts, process checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

#: Every start method this platform offers, fork last (it is the least safe in a threaded parent).
START_METHODS = tuple(
    m
    for m in ("forkserver", "spawn", "fork")
    if m in __import__("multiprocessing").get_all_start_methods()
)


def square(x: int) -> int:
    return x * x


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def meet(name: str, directory: str, others: int, patience: float = 20.0) -> tuple[int, bool]:
    """Wait until ``others`` other items run beside this one; return (pid, whether they did).

    Each item leaves a file named ``name`` in ``directory`` and waits for the others'
    files.  Items run side by side only when that many workers really hold them at once,
    so this proves concurrency without timing the machine; an item left alone gives up
    after ``patience`` seconds and says so.
    """
    Path(directory, name).touch()
    deadline = time.monotonic() + patience
    while len(os.listdir(directory)) < others + 1:
        if time.monotonic() >= deadline:
            return os.getpid(), False
        time.sleep(0.005)
    return os.getpid(), True


def die_on(x: int, how: str = "exit", marker: str | None = None) -> int:
    """Kill the worker running item 3 (once only if ``marker`` names a file); square the rest.

    ``how`` is ``"exit"`` (``os._exit(1)``) or ``"kill"`` (SIGKILL to itself).
    """
    if x == 3:
        first_time = marker is None or not Path(marker).exists()
        if marker is not None:
            Path(marker).touch()
        if first_time:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(1)
    return x * x


async def adie_on(x: int, how: str = "exit", marker: str | None = None) -> int:
    return die_on(x, how, marker)


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, grandchildren, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="utf-8")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def write_script(directory: Path, body: str, name: str = "script.py") -> Path:
    """A child script in ``directory``; ``body`` is dedented."""
    path = directory / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def run_script(path: Path, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    """Run ``path`` with this interpreter in its own directory; capture its output."""
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=path.parent,
        check=False,
    )


class LockHolder:
    """A result that cannot be pickled, even by cloudpickle: it holds a lock (and a lambda)."""

    def __init__(self) -> None:
        import threading  # noqa: PLC0415

        self.lock = threading.Lock()
        self.callback = lambda: None


class LockedError(Exception):
    """An exception that cannot be pickled: one of its arguments is a lock."""


class TwoArgError(Exception):
    """Pickles fine but cannot be unpickled: ``__init__`` needs two arguments, ``args`` has one."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def awkward(x: int) -> object:
    """1 returns an unpicklable result, 2 raises an unpicklable error, 3 a non-unpicklable one."""
    import threading  # noqa: PLC0415

    if x == 1:
        return LockHolder()
    if x == 2:
        raise LockedError(threading.Lock())
    if x == 3:
        raise TwoArgError(3, "cannot be rebuilt")
    return x * x


async def aawkward(x: int) -> object:
    return awkward(x)
