"""Correlation ids: ``opero.correlation()``, ``opero.correlation_id()``, and the id carried
into every local map mode (Dask: tests/dask/test_dask_correlation.py)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import subprocess
import sys
import threading
from typing import Any

import pytest

import opero
from opero import AllFailedError, ConfigurationError, correlation, correlation_id, opmap
from opero.testing import FakeClock

MODES = ("thread", "process", "async", "async_process")
FAST = {"retries": 1, "min_delay": 0.001, "max_delay": 0.001}


def test_there_is_no_id_outside_a_block() -> None:
    assert correlation_id() is None


def test_a_block_sets_the_id_and_restores_the_outer_one() -> None:
    with correlation("outer") as outer:
        assert outer == "outer"
        assert correlation_id() == "outer"
        with correlation("inner"):
            assert correlation_id() == "inner"
        assert correlation_id() == "outer"
    assert correlation_id() is None


def test_without_an_id_a_random_one_is_made() -> None:
    with correlation() as first, correlation() as second:
        assert correlation_id() == second
    assert len(first) == 32
    assert int(first, 16) >= 0  # hex
    assert first != second


def test_the_block_is_an_async_context_manager_too() -> None:
    async def main() -> tuple[str | None, str | None]:
        async with correlation("async-1"):
            inside = correlation_id()
            seen_by_task = await asyncio.create_task(_read_id())
        return inside, seen_by_task

    assert asyncio.run(main()) == ("async-1", "async-1")
    assert correlation_id() is None


async def _read_id() -> str | None:
    return correlation_id()


def test_concurrent_tasks_keep_their_own_ids() -> None:
    async def job(name: str) -> tuple[str, str | None]:
        async with correlation(name):
            await asyncio.sleep(0)
            return name, correlation_id()

    async def main() -> list[tuple[str, str | None]]:
        return await asyncio.gather(*(job(f"job-{i}") for i in range(5)))

    assert all(name == seen for name, seen in asyncio.run(main()))


@pytest.mark.parametrize("bad", ["", 12, b"bytes"])
def test_a_bad_id_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"correlation\(id=\.\.\.\)"):
        correlation(bad)


def test_an_active_opentelemetry_span_gives_the_default_id() -> None:
    trace = pytest.importorskip("opentelemetry.trace")
    context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        assert correlation_id() == "0af7651916cd43dd8448eb211c80319c"
        with correlation() as made:
            assert made == "0af7651916cd43dd8448eb211c80319c"
        with correlation("explicit"):
            assert correlation_id() == "explicit"  # an explicit id wins
    assert correlation_id() is None


def test_importing_opero_does_not_import_opentelemetry_or_uuid() -> None:
    code = "import sys, opero; print([m for m in ('opentelemetry', 'uuid') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_all_failed_error_carries_the_id_of_its_call(clock: FakeClock) -> None:
    @opero.opero(retries=1)
    def broken() -> None:
        raise ConnectionError("down")

    with correlation("req-42"), pytest.raises(AllFailedError) as info:
        broken()
    assert info.value.correlation_id == "req-42"

    with pytest.raises(AllFailedError) as outside:
        broken()
    assert outside.value.correlation_id is None


def test_async_calls_carry_the_id_too(clock: FakeClock) -> None:
    @opero.opero(retries=1, deadline=30)
    async def broken() -> None:
        raise ConnectionError("down")

    async def main() -> AllFailedError:
        async with correlation("req-async"):
            try:
                await broken()
            except AllFailedError as exc:
                return exc
        raise AssertionError

    assert asyncio.run(main()).correlation_id == "req-async"


def test_a_thread_started_by_the_caller_does_not_see_it_unless_carried() -> None:
    # Why the maps carry it: a plain thread starts with an empty context.
    seen: list[str | None] = []
    with correlation("caller"):
        plain = threading.Thread(target=lambda: seen.append(correlation_id()))
        copied = threading.Thread(
            target=contextvars.copy_context().run, args=(lambda: seen.append(correlation_id()),)
        )
        for thread in (plain, copied):
            thread.start()
            thread.join()
    if sys.version_info < (3, 14):
        assert seen[0] is None
    assert seen[1] == "caller"


# --- every local map mode: each item sees the caller's id; a failed item's error carries it


def ident(item: int) -> str | None:
    """The id an item sees; item 3 fails every attempt."""
    if item == 3:
        raise ConnectionError(f"item {item} failed")
    return correlation_id()


async def aident(item: int) -> str | None:
    """The async `ident`."""
    await asyncio.sleep(0)
    return ident(item)


def _run_map(mode: str, items: list[int]) -> list[Any]:
    func = aident if mode.startswith("async") else ident
    mapped = opmap(mode=mode, workers=2, progress=False, **FAST)(func)
    if mode.startswith("async"):

        async def main() -> list[Any]:
            result: list[Any] = await mapped(items)
            return result

        return asyncio.run(main())
    result: list[Any] = mapped(items)
    return result


@pytest.mark.parametrize("mode", MODES)
def test_every_map_mode_carries_the_id_to_each_item(mode: str) -> None:
    items = list(range(8))
    with correlation("map-7"):
        results = _run_map(mode, items)
    failed = results[3]
    assert isinstance(failed, AllFailedError)
    assert failed.correlation_id == "map-7"
    assert [r.error_type for r in failed.attempts] == ["ConnectionError", "ConnectionError"]
    assert [r.attempt for r in failed.attempts] == [1, 2]
    assert results[:3] + results[4:] == ["map-7"] * 7


@pytest.mark.parametrize("mode", MODES)
def test_a_map_outside_a_block_has_no_id(mode: str) -> None:
    results = _run_map(mode, [0, 3])
    assert results[0] is None
    assert results[1].correlation_id is None


def test_a_thread_map_carries_the_opentelemetry_trace_id() -> None:
    trace = pytest.importorskip("opentelemetry.trace")
    context = trace.SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=trace.TraceFlags(1)
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        results = _run_map("thread", [0, 1])
    assert results == [format(0x1234, "032x")] * 2


def test_pool_threads_get_their_own_id_back_after_a_map() -> None:
    with correlation("first-map"):
        _run_map("thread", list(range(8)))
    assert _run_map("thread", list(range(8)))[:3] == [None, None, None]


def test_log_records_of_a_thread_map_carry_the_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="opero")
    with correlation("logged-map"):
        _run_map("thread", [3])
    records = [r for r in caplog.records if r.name == "opero"]
    assert records  # the retry and the give-up
    assert {r.opero_correlation_id for r in records} == {"logged-map"}  # type: ignore[attr-defined]


def nap(item: float) -> float:
    """Sleeps ``item`` seconds (real time: the map's timeout is real time)."""
    import time  # noqa: PLC0415

    time.sleep(item)
    return item


async def anap(item: float) -> float:
    await asyncio.sleep(item)
    return item


@pytest.mark.parametrize("mode", ["thread", "async"])
def test_a_maps_own_timeout_error_carries_the_id(mode: str) -> None:
    func = anap if mode == "async" else nap
    mapped = opmap(mode=mode, workers=1, timeout=0.1, progress=False)(func)
    with correlation("slow-items"):
        if mode == "async":

            async def main() -> list[Any]:
                result: list[Any] = await mapped([0.5])
                return result

            (late,) = asyncio.run(main())
        else:
            (late,) = mapped([0.5])
    assert isinstance(late, opero.DeadlineExceeded)
    assert late.correlation_id == "slow-items"
    if mode == "async":  # the item's engine cut its attempt at the deadline: one record
        assert [r.error_type for r in late.attempts] == ["TimeoutError"]
    else:  # a sync attempt is not cut: the map's own cut, which has no attempts to give
        assert late.attempts == ()
