"""A process or Dask map's parent looks up and stores through the cache layer's batch API.

Real calls are counted as lines in a file (they happen in worker processes).
Two maps over overlapping items, on a disk store and on the shared redis
server, must run each distinct item once in all; a map decorated afresh on
the same store runs nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opero import opmap

REDIS = {"host": "127.0.0.1", "port": 6379, "db": 9}
MODES = ("process", "async_process")


def logged_square(x: int, log: str) -> int:
    with open(log, "a") as handle:
        handle.write(f"{x}\n")
    return x * x


async def alogged_square(x: int, log: str) -> int:
    return logged_square(x, log)


def _ran(log: Path) -> list[int]:
    return sorted(int(line) for line in log.read_text().split()) if log.exists() else []


def _redis_client() -> Any:
    redis = pytest.importorskip("redis")
    client = redis.Redis(**REDIS, socket_connect_timeout=0.5)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        client.close()
        pytest.skip("no redis-server on 127.0.0.1:6379")
    return client


@pytest.fixture(params=["disk", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``@opmap`` settings for a cache in a fresh namespace on one store."""
    namespace = f"maps-{uuid.uuid4().hex}"
    if request.param == "disk":
        yield {"cache_backend": "disk", "cache_backend_config": {"directory": str(tmp_path)}}
        return
    client = _redis_client()
    yield {"cache_backend": "redis", "cache_backend_config": REDIS, "cache_namespace": namespace}
    keys = list(client.scan_iter(match=f"opero:cache:{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _mapped(mode: str, store: dict[str, Any]) -> Any:
    func = alogged_square if mode == "async_process" else logged_square
    return opmap(mode=mode, workers=2, progress=False, cache=True, retries=0, **store)(func)


def _run(mapped: Any, mode: str, items: list[int], log: Path) -> list[Any]:
    if mode == "async_process":
        return asyncio.run(mapped(items, str(log)))  # type: ignore[no-any-return]
    return mapped(items, str(log))  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", MODES)
def test_two_maps_on_a_store_run_each_item_once(
    mode: str, store: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "runs.txt"
    mapped = _mapped(mode, store)
    assert _run(mapped, mode, [1, 2, 3, 2, 1], log) == [1, 4, 9, 4, 1]
    assert _ran(log) == [1, 2, 3]  # the duplicates followed their leaders
    assert _run(mapped, mode, [3, 4, 1, 4], log) == [9, 16, 1, 16]
    assert _ran(log) == [1, 2, 3, 4]  # 3 and 1 came from the store
    stats = mapped.statistics()
    assert (stats.cache_misses, stats.cache_hits) == (4, 5)
    fresh = _mapped(mode, store)  # a new decoration: a new process would see the same
    assert _run(fresh, mode, [4, 3, 2, 1], log) == [16, 9, 4, 1]
    assert _ran(log) == [1, 2, 3, 4]
    assert fresh.statistics().cache_hits == 4


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_item_is_not_stored_and_runs_again(
    mode: str, store: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "runs.txt"
    mapped = _mapped(mode, store)
    first = _run(mapped, mode, [1, 2], tmp_path / "missing-dir" / "runs.txt")
    assert all(isinstance(entry, Exception) for entry in first), first  # nothing stored
    assert _run(mapped, mode, [1, 2], log) == [1, 4]
    assert _ran(log) == [1, 2]
