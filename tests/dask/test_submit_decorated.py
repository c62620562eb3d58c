"""``Client.submit`` ships a decorated function by value (cloudpickle) to a real worker.

A function decorated inside a test (or a script, or a notebook) cannot be
imported by the worker: it must travel by value, and run there with the
worker's own fresh state.
"""

from __future__ import annotations

import os
from typing import Any

from opero import AllFailedError, opero


def test_a_decorated_function_runs_on_a_worker(dask_client: Any) -> None:
    @opero(cache=True, retries=2, min_delay=0.0, arg_fallback="key")
    def fetch(item: int, key: list[str] = ["down", "up"]) -> tuple[int, str, int]:  # noqa: B006
        if key[0] == "down":
            raise ConnectionError("candidate refused")
        return item * 2, key[0], os.getpid()

    assert fetch(1)[:2] == (2, "up")  # used here first: live state (locks, cache) exists

    doubled, key, pid = dask_client.submit(fetch, 21, pure=False).result(timeout=30)
    assert (doubled, key) == (42, "up")
    assert pid != os.getpid()

    def stats_on_worker(f: Any, item: int) -> dict[str, int]:
        f(item)
        f(item)
        stats = f.statistics()
        return {"calls": stats.calls, "hits": stats.cache_hits, "fallbacks": stats.fallbacks}

    remote = dask_client.submit(stats_on_worker, fetch, 5, pure=False).result(timeout=30)
    assert remote == {"calls": 2, "hits": 1, "fallbacks": 1}  # its own fresh counters
    assert fetch.statistics().calls == 1  # the local function was not touched


def test_an_async_decorated_function_and_its_failure_travel(dask_client: Any) -> None:
    @opero(retries=1, min_delay=0.0)
    async def always_down(n: int) -> int:
        raise TimeoutError(f"upstream {n} timed out")

    def run(f: Any) -> Any:
        import asyncio  # noqa: PLC0415

        try:
            asyncio.run(f(3))
        except AllFailedError as error:
            return error
        return None

    error = dask_client.submit(run, always_down, pure=False).result(timeout=30)
    assert isinstance(error, AllFailedError)
    assert error.attempt_count == 2
    assert [type(e) for e in error.errors] == [TimeoutError, TimeoutError]
