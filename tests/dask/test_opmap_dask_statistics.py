"""``mode="dask"`` reports the same exact statistics as the local modes (issue 10, item 10).

The retries and fallbacks run on the cluster's workers; their counts come back
with each batch.  The workload is the deterministic one of ``opmap_workload.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

pytest.importorskip("distributed")

from opero import opmap
from opero.utils.introspection import get_opero_info
from opmap_workload import (
    FLAKY_SETTINGS,
    FLAKY_STATISTICS,
    FLAKY_WAITED,
    KEYED_SETTINGS,
    KEYED_STATISTICS,
    KEYED_WAITED,
    KEYS,
    akeyed,
    flaky,
    keyed,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_dask_counts_retries_and_fallbacks_like_thread_mode(
    dask_client: Any, chunk_size: int | None
) -> None:
    settings = {"workers": 2, "progress": False, "chunk_size": chunk_size, **KEYED_SETTINGS}
    on_cluster = opmap(mode="dask", client=dask_client, **settings)(keyed)
    in_threads = opmap(mode="thread", **settings)(keyed)
    kinds = [type(r) for r in on_cluster(range(8), api_key=KEYS)]
    assert kinds == [type(r) for r in in_threads(range(8), api_key=KEYS)]

    stats = on_cluster.statistics().as_dict()
    assert stats.pop("waited") == pytest.approx(KEYED_WAITED)
    assert stats == KEYED_STATISTICS
    reference = in_threads.statistics().as_dict()
    reference.pop("waited")
    assert stats == reference


def test_dask_counts_an_async_function_and_the_direct_path(dask_client: Any) -> None:
    mapped = opmap(mode="dask", client=dask_client, progress=False, **KEYED_SETTINGS)(akeyed)
    asyncio.run(mapped(range(8), api_key=KEYS))
    stats = mapped.statistics().as_dict()
    assert stats.pop("waited") == pytest.approx(KEYED_WAITED)
    assert stats == KEYED_STATISTICS

    direct = opmap(mode="dask", client=dask_client, progress=False, **FLAKY_SETTINGS)(flaky)
    direct(range(10), uuid.uuid4().hex)
    stats = direct.statistics().as_dict()
    assert stats.pop("waited") == pytest.approx(FLAKY_WAITED)
    assert stats == FLAKY_STATISTICS


def test_dask_info_shows_every_setting(dask_client: Any) -> None:
    mapped = opmap(mode="dask", client=dask_client, progress=False, workers=3, **KEYED_SETTINGS)(
        keyed
    )
    config = get_opero_info(mapped)["configuration"]
    assert (config["mode"], config["workers"], config["retries"], config["arg_fallback"]) == (
        "dask",
        3,
        1,
        "api_key",
    )
