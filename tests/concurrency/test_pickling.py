"""Values that cannot cross the process boundary fail their own item, never the map.

A result or exception that cannot be pickled comes back as a ``ConcurrencyError``
naming its type; every other item, including the ones in the same chunk, keeps
its result.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from worker_helpers import aawkward, awkward, square

from opero import AllFailedError, ConcurrencyError, opmap

pytestmark = pytest.mark.timeout(30)

PROCESS_MODES = ("process", "async_process")


def _map(mode: str, items: list[Any], **settings: Any) -> list[Any]:
    func = aawkward if mode == "async_process" else awkward
    mapped = opmap(mode=mode, workers=2, progress=False, **settings)(func)
    if mode == "async_process":
        return asyncio.run(_wait(mapped(items)))
    return mapped(items)  # type: ignore[no-any-return]


async def _wait(awaitable: Any) -> Any:
    return await awaitable


@pytest.mark.parametrize("mode", PROCESS_MODES)
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_unpicklable_result_is_that_items_concurrency_error(mode: str, chunk_size: int) -> None:
    results = _map(mode, [0, 1, 4, 5], chunk_size=chunk_size)
    assert results[0] == 0
    assert results[2:] == [16, 25]
    error = results[1]
    assert isinstance(error, ConcurrencyError)
    assert "LockHolder" in str(error)


@pytest.mark.parametrize("mode", PROCESS_MODES)
@pytest.mark.parametrize("chunk_size", [1, 3])
def test_unpicklable_exception_is_that_items_concurrency_error(mode: str, chunk_size: int) -> None:
    # retry_on excludes it, so the error would come back unwrapped if it could travel.
    results = _map(mode, [0, 2, 4, 5], chunk_size=chunk_size, retry_on=ConnectionError)
    assert results[0] == 0
    assert results[2:] == [16, 25]
    error = results[1]
    assert isinstance(error, ConcurrencyError)
    assert "LockedError" in str(error)


@pytest.mark.parametrize("mode", PROCESS_MODES)
def test_unpicklable_error_inside_all_failed_error_is_reported(mode: str) -> None:
    results = _map(mode, [2, 4], retries=0)
    assert results[1] == 16
    assert isinstance(results[0], ConcurrencyError)
    assert not isinstance(results[0], AllFailedError)
    assert "AllFailedError" in str(results[0]) or "LockedError" in str(results[0])


@pytest.mark.parametrize("mode", PROCESS_MODES)
def test_exception_that_cannot_be_rebuilt_fails_only_its_item(mode: str) -> None:
    results = _map(mode, [0, 3, 4, 5], chunk_size=4, retry_on=ConnectionError)
    assert results[0] == 0
    assert results[2:] == [16, 25]
    assert isinstance(results[1], ConcurrencyError)
    assert "TwoArgError" in str(results[1])


def test_map_works_again_after_unpicklable_values() -> None:
    _map("process", [1, 2, 4], retry_on=ConnectionError)
    mapped = opmap(mode="process", workers=2, progress=False)(square)
    assert mapped([1, 2, 3]) == [1, 4, 9]


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_unpicklable_item_fails_only_its_own_slot(chunk_size: int) -> None:
    mapped = opmap(mode="process", workers=2, chunk_size=chunk_size, progress=False)(_identity_type)
    results = mapped([1, threading.Lock(), 3, 4])
    assert isinstance(results[1], ConcurrencyError)
    if chunk_size == 1:
        assert results[0] == "int"
        assert results[2:] == ["int", "int"]


def _identity_type(x: object) -> str:
    return type(x).__name__


def test_lambda_items_reach_the_worker() -> None:
    mapped = opmap(mode="process", workers=2, chunk_size=1, progress=False)(_call)
    assert mapped([lambda: 1, lambda: 2]) == [1, 2]


def test_lambda_extra_argument_reaches_the_worker() -> None:
    mapped = opmap(mode="process", workers=2, progress=False)(_apply)
    assert mapped([1, 2, 3], lambda x: x + 10) == [11, 12, 13]


def _call(x: Any) -> Any:
    return x()


def _apply(x: int, func: Any) -> Any:
    return func(x)
