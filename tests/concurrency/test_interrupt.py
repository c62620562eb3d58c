"""Ctrl-C stops a process-mode map quickly and leaves no process behind (issue 4).

A child interpreter runs a map of slow items; once its workers report that they
started, the test sends SIGINT (to the child alone, or to its whole process
group as a terminal's Ctrl-C does) and checks that the child exits within a
few seconds with KeyboardInterrupt and that every process it had started is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from worker_helpers import descendants, run_script, write_script

from opero import opmap
from process_checks import is_alive, wait_until_gone

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc"),
]

_SLOW_MAP = """
import os
import signal
import sys
import time

from opero import opmap

# A child started from a background job inherits SIGINT as ignored, and Python then
# installs no KeyboardInterrupt handler; restore it, as an interactive shell would have.
signal.signal(signal.SIGINT, signal.default_int_handler)


def slow(x):
    print(f"started {os.getpid()}", flush=True)
    time.sleep(30)
    return x


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


if __name__ == "__main__":
    opts = {"mode": sys.argv[1], "workers": 2, "chunk_size": 1, "progress": False,
            "start_method": sys.argv[2]}
    if sys.argv[1] == "process":
        print("workers", sorted(set(opmap(**opts)(pid_after)([0.2] * 4))), flush=True)
        opmap(**opts)(slow)(range(8))
    else:
        import asyncio

        async def aslow(x):
            return slow(x)

        asyncio.run(opmap(**opts)(aslow)(range(8)))
    print("map returned", flush=True)
"""


def _kill_family(child: subprocess.Popen[str], family: list[int]) -> None:
    """Whatever the outcome, end the child and every process it started; close its pipes.

    The grandchildren hold the child's stdout and stderr open, so they must go too.
    """
    leftovers = set(family)
    if child.poll() is None:
        leftovers.update(descendants(child.pid))
        child.kill()
    for pid in leftovers:
        if is_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    child.communicate(timeout=10)


def _read_until(child: subprocess.Popen[str], marker: str, within: float) -> str:
    """What the child printed until a line starting with ``marker`` appeared.

    Reads the pipe's descriptor directly: a buffered ``readline`` may pull several lines
    into its buffer at once, and ``select`` would then wait for data already read.
    """
    assert child.stdout is not None
    descriptor = child.stdout.fileno()
    text = ""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([descriptor], [], [], 0.1)
        if ready:
            data = os.read(descriptor, 65536)
            if not data:
                break
            text += data.decode()
            if any(line.startswith(marker) for line in text.splitlines()):
                return text
    error = ""
    if child.poll() is not None and child.stderr is not None:
        error = child.stderr.read()[-2000:]
    msg = f"child never printed {marker!r}; saw {text!r}; stderr: {error}"
    raise AssertionError(msg)


@pytest.mark.parametrize(
    ("mode", "method", "group"),
    [
        ("process", "forkserver", False),
        ("process", "forkserver", True),
        ("process", "spawn", False),
        pytest.param("async_process", "forkserver", False),
    ],
)
def test_sigint_stops_the_map_and_leaves_no_children(
    mode: str, method: str, group: bool, tmp_path: Path
) -> None:
    script = write_script(tmp_path, _SLOW_MAP)
    family: list[int] = []
    child = subprocess.Popen(
        [sys.executable, str(script), mode, method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=group,
    )
    try:
        _read_until(child, "started", within=20)
        time.sleep(0.2)  # let the second worker pick up its item too
        family = descendants(child.pid)
        assert family, "the map started no processes"

        began = time.monotonic()
        if group:
            os.killpg(child.pid, signal.SIGINT)
        else:
            child.send_signal(signal.SIGINT)
        try:
            stdout, stderr = child.communicate(timeout=3.5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the child was still running 3.5 s after SIGINT (family {family})")
        elapsed = time.monotonic() - began
    finally:
        _kill_family(child, family)

    assert child.returncode != 0
    assert "KeyboardInterrupt" in stderr or child.returncode == -signal.SIGINT
    assert "map returned" not in stdout
    assert elapsed < 3.0, f"exit took {elapsed:.2f} s"
    assert wait_until_gone(family, within=2.0) == set(), "processes outlived the interrupted map"


_NORMAL_EXIT = """
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, sys.argv[2])
from worker_helpers import descendants

from opero import opmap


def pid_once_both_started(barrier):
    # Each worker leaves its pid in the barrier directory, then waits until both have:
    # one worker alone may not run every item while its pool starts the other.
    Path(barrier, str(os.getpid())).touch()
    deadline = time.monotonic() + 8
    while len(os.listdir(barrier)) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {os.listdir(barrier)} started within 8 s")
        time.sleep(0.01)
    return os.getpid()


if __name__ == "__main__":
    mapped = opmap(mode="process", workers=2, chunk_size=1, progress=False,
                   start_method=sys.argv[1])(pid_once_both_started)
    pids = mapped([sys.argv[3]] * 4)
    errors = [repr(pid) for pid in pids if not isinstance(pid, int)]
    workers = sorted({pid for pid in pids if isinstance(pid, int)})
    print(json.dumps({"workers": workers, "errors": errors, "family": descendants(os.getpid())}))
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_pools_shut_down_at_interpreter_exit(method: str, tmp_path: Path) -> None:
    script = write_script(tmp_path, _NORMAL_EXIT)
    barrier = tmp_path / "started"
    barrier.mkdir()
    began = time.monotonic()
    done = run_script(script, method, str(Path(__file__).parent), str(barrier), timeout=30)
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] == []
    assert len(report["workers"]) == 2  # the barrier made both workers run an item
    assert set(report["workers"]) <= set(report["family"])
    assert elapsed < 10
    assert wait_until_gone(report["family"], within=2.0) == set()
    assert not any(is_alive(pid) for pid in report["workers"])


async def _sleep_then_return(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def test_cancelling_an_async_process_map_is_prompt() -> None:
    mapped = opmap(mode="async_process", workers=2, chunk_size=1, progress=False)(
        _sleep_then_return
    )

    async def main() -> float:
        began = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mapped([2.0, 2.0, 2.0]), timeout=0.3)
        return time.monotonic() - began

    assert asyncio.run(main()) < 1.2


def test_cancelling_an_async_map_cancels_its_tasks() -> None:
    finished: list[float] = []

    @opmap(mode="async", workers=2, progress=False)
    async def nap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        finished.append(seconds)
        return seconds

    async def main() -> float:
        began = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(nap([0.01, 5.0, 5.0, 5.0]), timeout=0.3)
        elapsed = time.monotonic() - began
        await asyncio.sleep(0.05)
        return elapsed

    assert asyncio.run(main()) < 1.0
    assert finished == [0.01]
