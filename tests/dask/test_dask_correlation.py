"""mode="dask": the caller's correlation id reaches each item on the cluster's workers, and
the AllFailedError an item ends with there comes back with it and its attempt records."""

from __future__ import annotations

import pickle
import time
from typing import Any

import pytest

pytest.importorskip("distributed")

from opero import AllFailedError, DeadlineExceeded, correlation, correlation_id, opmap

pytestmark = pytest.mark.timeout(60)

FAST = {"retries": 1, "min_delay": 0.001, "max_delay": 0.001, "progress": False}


def _mapped(client: Any, **settings: Any) -> Any:
    # Defined here, so cloudpickle ships it by value: the workers need not import this module.
    def ident(item: int) -> str | None:
        if item == 3:
            raise ConnectionError(f"item {item} failed")
        return correlation_id()

    return opmap(mode="dask", client=client, chunk_size=2, **FAST, **settings)(ident)


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_each_item_on_the_cluster_sees_the_callers_id(
    dask_client: Any, timeout: float | None
) -> None:
    # With a timeout, a chunk runs in a thread of its own on the worker
    # (run_chunk_with_deadline): the id must be set there too.
    with correlation("dask-map-1"):
        results = _mapped(dask_client, timeout=timeout)(list(range(6)))
    assert results[:3] + results[4:] == ["dask-map-1"] * 5
    failed = results[3]
    assert isinstance(failed, AllFailedError)
    assert failed.correlation_id == "dask-map-1"
    assert [(r.attempt, r.candidate, r.error_type) for r in failed.attempts] == [
        (1, None, "ConnectionError"),
        (2, None, "ConnectionError"),
    ]
    assert failed.attempts[0].wait == pytest.approx(0.001)
    assert failed.attempts[0].wait_reason == "backoff"
    assert failed.attempts[1].error is failed.errors[1]  # one object, across the wire
    clone = pickle.loads(pickle.dumps(failed))
    assert [r.error_type for r in clone.attempts] == ["ConnectionError"] * 2


def test_no_id_outside_a_block(dask_client: Any) -> None:
    results = _mapped(dask_client)([0, 3])
    assert results[0] is None
    assert results[1].correlation_id is None


def test_a_late_items_deadline_error_carries_the_id(dask_client: Any) -> None:
    def slow(item: int) -> int:
        time.sleep(0.8)
        return item

    mapped = opmap(mode="dask", client=dask_client, timeout=0.2, progress=False)(slow)
    with correlation("late-items"):
        (late,) = mapped([1])
    assert isinstance(late, DeadlineExceeded)
    assert late.correlation_id == "late-items"
