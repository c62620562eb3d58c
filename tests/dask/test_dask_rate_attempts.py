"""A Dask map's rate limit and a server's pause are held where the map is submitted (issue 13).

The same checks as ``tests/concurrency/test_map_rate_attempts.py`` and
``test_map_retry_after.py``, on the session's 2-worker ``LocalCluster``: every
call on a worker (retries included) takes a slot from the submitting process's
limiter, and a ``Retry-After`` seen on one worker holds the other too.  The
functions come from ``tests/concurrency/map_timing.py``, shipped by value (the
workers cannot import that directory).  Real time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import cloudpickle

from opero import opmap

pytestmark = pytest.mark.timeout(90)


def _timing() -> Any:
    path = Path(__file__).resolve().parent.parent / "concurrency" / "map_timing.py"
    spec = importlib.util.spec_from_file_location("map_timing", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("map_timing", module)
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    return module


t = _timing()


def test_dask_map_counts_retries_against_the_rate(dask_client: Any, tmp_path: Path) -> None:
    mapped = opmap(
        mode="dask",
        client=dask_client,
        rate_limit=20,
        rate_limit_burst=1,
        retries=2,
        min_delay=0.01,
        progress=False,
    )(t.failing_once(str(tmp_path)))
    results = mapped(list(range(15)))
    t.assert_rate_held(str(tmp_path), results, 15)
    assert mapped.statistics().retries == 15


@pytest.mark.parametrize("rate", [None, 100])
def test_dask_map_holds_the_pause(dask_client: Any, rate: float | None, tmp_path: Path) -> None:
    mapped = opmap(mode="dask", client=dask_client, rate_limit=rate, retries=1, progress=False)(
        t.refused_once(str(tmp_path))
    )
    t.assert_pause_held(str(tmp_path), mapped(list(range(12))), 12)


@pytest.mark.asyncio
async def test_async_dask_map_holds_the_pause(dask_client: Any, tmp_path: Path) -> None:
    mapped = opmap(mode="dask", client=dask_client, retries=1, progress=False)(
        t.arefused_once(str(tmp_path))
    )
    t.assert_pause_held(str(tmp_path), await mapped(list(range(12))), 12)
