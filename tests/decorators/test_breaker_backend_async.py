"""Key pools kept elsewhere do their round trips without blocking an async caller's loop.

``breaker_backend="redis"`` and a process map's parent are asked from a step
(`opero.core.steps.Remote`), which an async call awaits: while one call waits on a
frozen redis (SIGSTOP of a redis-server of this test's own, resumed in a ``finally``),
another task of the same loop keeps running.  The outage rules hold for async code as
for sync code: local state, one WARNING, nothing opened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_breaker_backend_redis import Server, unique

from opero import Breaker, opero, opmap

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP")

#: Every round trip gives up after this (the loop must run meanwhile).
TIMEOUT = 0.3


@pytest.fixture
def server() -> Iterator[Server]:
    own = Server()
    own.start()
    try:
        yield own
    finally:
        own.stop()


def frozen_config(server: Server) -> dict[str, Any]:
    return {**server.config, "socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}


def freeze(server: Server) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)


def thaw(server: Server) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGCONT)


async def ticking_while(call: Any) -> tuple[Any, int]:
    """``call()``'s result and how many 10 ms sleeps another task made meanwhile."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker is running
    try:
        result = await call()
    finally:
        done.set()
        await task
    return result, ticks


def pooled(server: Server, **more: Any) -> Any:
    settings: dict[str, Any] = {
        "retries": 0,
        "arg_fallback": "key",
        "candidate_breaker": Breaker(failure_threshold=1, cooldown=30),
        "rate_limit_scope": unique(),
        "breaker_backend": "redis",
        "breaker_backend_config": frozen_config(server),
    }
    return opero(**(settings | more))


def test_a_frozen_redis_does_not_block_the_loop_when_taking_a_candidate(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opero")

    @pooled(server, candidate_rate_limit=50)
    async def fetch(i: int, key: list[str] = ["a", "b"]) -> int:  # noqa: B006
        return i

    async def main() -> tuple[Any, int]:
        assert await fetch(0) == 0  # connected
        freeze(server)
        try:
            return await ticking_while(lambda: fetch(1))
        finally:
            thaw(server)

    result, ticks = asyncio.run(main())
    assert result == 1  # the outage goes on locally
    assert ticks >= 5, ticks  # the loop ran while the round trip waited (some 30 expected)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "unavailable (TimeoutError)" in warnings[0]
    assert all(s.state == "closed" for s in fetch.statistics().candidates)


def test_a_redis_frozen_during_the_call_does_not_block_the_loop_when_settling(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opero")

    @pooled(server)
    async def fetch(freezing: bool, key: list[str] = ["a", "b"]) -> bool:  # noqa: B006
        if freezing:
            freeze(server)  # the candidate is taken: its outcome is what waits on redis
        return freezing

    async def main() -> tuple[Any, int]:
        assert await fetch(False) is False
        try:
            return await ticking_while(lambda: fetch(True))
        finally:
            thaw(server)

    result, ticks = asyncio.run(main())
    assert result is True
    assert ticks >= 5, ticks
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert all(s.state == "closed" for s in fetch.statistics().candidates)


def test_a_frozen_redis_does_not_block_the_loop_for_the_circuit_breaker(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="opero")

    @opero(
        retries=0,
        circuit_breaker=Breaker(failure_threshold=1, cooldown=30),
        breaker_backend="redis",
        breaker_backend_config=frozen_config(server),
    )
    async def fetch(i: int) -> int:
        return i

    async def main() -> tuple[Any, int]:
        assert await fetch(0) == 0
        freeze(server)
        try:
            return await ticking_while(lambda: fetch(1))
        finally:
            thaw(server)

    result, ticks = asyncio.run(main())
    assert result == 1
    assert ticks >= 5, ticks
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert fetch.statistics().breaker == "closed"


def test_a_call_cancelled_while_redis_is_frozen_ends_at_once_and_keeps_nothing(
    server: Server,
) -> None:
    @pooled(server, candidate_rate_limit=1000)
    async def fetch(i: int, key: list[str] = ["only"]) -> int:  # noqa: B006
        return i

    async def main() -> tuple[bool, float, tuple[int, int]]:
        assert await fetch(0) == 0
        freeze(server)
        try:
            task = asyncio.create_task(fetch(1))
            await asyncio.sleep(0.05)  # its pick waits on the frozen redis
            task.cancel()
            began = time.monotonic()
            try:
                await task
            except asyncio.CancelledError:
                cancelled = True
            else:
                cancelled = False
            took = time.monotonic() - began
        finally:
            thaw(server)
        for _ in range(100):  # the pick ends on its lane (it took the candidate), then
            candidate = fetch.statistics().candidates[0]  # what it took goes back
            if candidate.calls == 2 and candidate.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        return cancelled, took, (candidate.calls, candidate.in_flight)

    cancelled, took, (calls, in_flight) = asyncio.run(main())
    assert cancelled  # (a blocked loop delivered the cancel only after the call had ended)
    assert took < TIMEOUT, took
    assert (calls, in_flight) == (2, 0)


def test_the_outage_rules_hold_for_async_calls(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opero")

    @pooled(server, candidate_rate_limit=1000)
    async def fetch(i: int, key: list[str] = ["only"]) -> int:  # noqa: B006
        return i

    async def main() -> list[int]:
        first = [await fetch(i) for i in range(2)]
        server.stop()
        return first + list(await asyncio.gather(*(fetch(i) for i in range(2, 8))))

    assert asyncio.run(main()) == list(range(8))
    assert all(s.state == "closed" for s in fetch.statistics().candidates)  # none opened
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len([m for level, m in messages if level == logging.WARNING]) == 1
    assert not any("-> open" in m for _, m in messages)


# --- an async_process map's worker asks its parent without blocking its loop ---------------


def freezing_parent(hold: float) -> Any:
    """An async ``call(item, key)`` for a map's worker: it stops the map's parent (the test
    process, ``item[0]``) for ``hold`` seconds, a thread of the worker resuming it, and
    returns a list a task of the worker's loop appends a tick to every 10 ms until then.

    The list is sent back once the call has ended, which is after its outcome reached the
    parent: so it holds the ticks made while the worker waited for the stopped parent.
    The call returns once every thread of the parent is stopped (Linux's /proc).
    Self-contained (imports inside), so cloudpickle ships it by value.
    """

    async def call(item: tuple[int, int], key: list[str] = ["a", "b"]) -> list[float]:  # noqa: B006
        import asyncio  # noqa: PLC0415
        import os  # noqa: PLC0415
        import signal  # noqa: PLC0415
        import threading  # noqa: PLC0415
        import time  # noqa: PLC0415

        parent = item[0]
        ticks: list[float] = []
        until = time.monotonic() + hold

        async def ticker() -> None:
            while time.monotonic() < until:
                await asyncio.sleep(0.01)
                ticks.append(time.monotonic())

        threading.Timer(hold, os.kill, (parent, signal.SIGCONT)).start()
        os.kill(parent, signal.SIGSTOP)
        # kill() only queues the stop: a thread of the parent stops the rest once it
        # runs, and on a loaded machine the parent's server thread can answer first.
        # Wait until every thread of it is stopped ("T" in /proc), at most the hold.
        tasks = f"/proc/{parent}/task"
        while time.monotonic() < until:
            states = []
            for task in os.listdir(tasks):
                try:
                    with open(f"{tasks}/{task}/stat") as stat:
                        states.append(stat.read().rsplit(")", 1)[1].split()[0])
                except FileNotFoundError:  # a thread that has just ended
                    continue
            if all(state in "tT" for state in states):
                break
            time.sleep(0.0005)
        call.ticker = asyncio.get_running_loop().create_task(ticker())  # type: ignore[attr-defined]
        return ticks

    return call


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc")
def test_an_async_process_map_worker_asks_its_parent_without_blocking_its_loop() -> None:
    import subprocess  # noqa: PLC0415

    parent = os.getpid()
    # Whatever happens to the worker, the test process runs again within 3 s.
    guard = subprocess.Popen(["sh", "-c", f"sleep 3; kill -CONT {parent}"])
    try:
        mapped = opmap(
            mode="async_process",
            workers=1,
            progress=False,
            retries=0,
            arg_fallback="key",
            candidate_breaker=True,
        )(freezing_parent(TIMEOUT))
        results = asyncio.run(mapped([(parent, 0)]))
    finally:
        guard.terminate()
        guard.wait()
    assert len(results[0]) >= 5, results  # the loop ran while the worker waited (some 30)
