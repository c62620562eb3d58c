"""Every ``@opmap`` mode reports the same exact statistics and all its settings (issue 10, 10).

Process modes run retries and fallbacks in the workers; their counts come back
with each chunk and are added to the parent's statistics.  The workloads in
``opmap_workload.py`` are deterministic, so thread, async, process and
async_process maps must agree with each other and with the counts worked out
by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from opero import AllFailedError, opmap
from opero.utils.introspection import analyze_function, get_opero_info
from opmap_workload import (
    FLAKY_SETTINGS,
    FLAKY_STATISTICS,
    FLAKY_WAITED,
    KEYED_SETTINGS,
    KEYED_STATISTICS,
    KEYED_WAITED,
    KEYS,
    aflaky,
    akeyed,
    flaky,
    keyed,
)

SYNC_MODES = ("thread", "process")
ASYNC_MODES = ("async", "async_process")


def run(mapped: Any, items: Any, *args: Any, **kwargs: Any) -> list[Any]:
    result = mapped(items, *args, **kwargs)
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


def counts(mapped: Any) -> tuple[dict[str, Any], float]:
    stats = mapped.statistics().as_dict()
    return stats, stats.pop("waited")


def keyed_map(mode: str, **extra: Any) -> Any:
    func = akeyed if mode in ASYNC_MODES else keyed
    settings = {"workers": 2, "progress": False, **KEYED_SETTINGS, **extra}
    return opmap(mode=mode, **settings)(func)


@pytest.mark.parametrize("mode", SYNC_MODES + ASYNC_MODES)
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_retries_and_fallbacks_are_counted_exactly(mode: str, chunk_size: int | None) -> None:
    mapped = keyed_map(mode, chunk_size=chunk_size)
    results = run(mapped, range(8), api_key=KEYS)

    assert [r for r in results if not isinstance(r, Exception)] == [0, 2, 4, 6]
    assert [type(r) for r in results[1::2]] == [AllFailedError, KeyError] * 2
    stats, waited = counts(mapped)
    assert stats == KEYED_STATISTICS
    assert waited == pytest.approx(KEYED_WAITED)


@pytest.mark.parametrize("mode", SYNC_MODES + ASYNC_MODES)
def test_retries_on_the_direct_path_are_counted_exactly(mode: str) -> None:
    """No fallback: a process worker calls the function directly and resumes on an error."""
    func = aflaky if mode in ASYNC_MODES else flaky
    mapped = opmap(mode=mode, workers=2, progress=False, **FLAKY_SETTINGS)(func)
    results = run(mapped, range(10), uuid.uuid4().hex)

    assert [type(r) for r in results].count(ValueError) == 2
    stats, waited = counts(mapped)
    assert stats == FLAKY_STATISTICS
    assert waited == pytest.approx(FLAKY_WAITED)


def test_every_mode_agrees() -> None:
    """The same workload, two maps each: statistics add up the same in every mode."""
    seen = {}
    for mode in SYNC_MODES + ASYNC_MODES:
        mapped = keyed_map(mode)
        run(mapped, range(8), api_key=KEYS)
        run(mapped, range(8), api_key=KEYS)
        stats, waited = counts(mapped)
        seen[mode] = (stats, round(waited, 6))
    assert len({repr(value) for value in seen.values()}) == 1, seen
    assert seen["process"][0]["attempts"] == 2 * KEYED_STATISTICS["attempts"]


def test_counts_are_sent_once_per_chunk_not_per_item() -> None:
    """A chunk with nothing to report sends nothing: no counters ride on successful items."""
    import pickle  # noqa: PLC0415

    from opero.concurrency.worker import run_chunk_in_worker  # noqa: PLC0415

    spec = opmap(mode="process", progress=False, **FLAKY_SETTINGS)(flaky).__opmap__.spec
    token = uuid.uuid4().hex
    extra = pickle.dumps(((token,), {}))

    clean = pickle.loads(run_chunk_in_worker(spec.key, spec.blob, pickle.dumps([0, 3, 6]), extra))
    assert clean == ([0, 3, 6], [], None)
    values, failed, delta = pickle.loads(
        run_chunk_in_worker(spec.key, spec.blob, pickle.dumps([2, 4]), extra)
    )
    assert values[0] == 2
    assert failed == [1]
    assert delta == (2, 0, 1, pytest.approx(0.03))


# -- settings ------------------------------------------------------------------------------
MAP_SETTINGS = {
    "workers": 3,
    "ordered": False,
    "timeout": 5.0,
    "chunk_size": 2,
    "progress": False,
}


def should_go_on() -> bool:
    return True


@pytest.mark.parametrize("mode", SYNC_MODES + ASYNC_MODES)
def test_info_shows_every_setting_given(mode: str) -> None:
    mapped = keyed_map(mode, **MAP_SETTINGS, should_process=should_go_on)
    config = get_opero_info(mapped)["configuration"]

    assert config["retries"] == 1
    assert config["arg_fallback"] == "api_key"
    assert config["min_delay"] == 0.01
    assert config["retry_on"] == ("PermissionError", "ConnectionError")
    assert config["mode"] == mode
    assert {name: config[name] for name in MAP_SETTINGS} == MAP_SETTINGS
    assert config["should_process"] == "should_go_on"
    assert get_opero_info(mapped)["layers"] == ["retry", "fallback"]
    assert "mode " + mode in analyze_function(mapped)
    assert "Retries: 1" in analyze_function(mapped)


@pytest.mark.parametrize("mode", SYNC_MODES + ASYNC_MODES)
def test_info_shows_the_defaults_the_map_runs_with(mode: str) -> None:
    func = akeyed if mode in ASYNC_MODES else keyed
    config = get_opero_info(opmap(mode=mode)(func))["configuration"]
    assert config["mode"] == mode
    assert config["workers"] == 4
    assert config["ordered"] is True
    assert config["progress"] is None  # a bar on a terminal, nothing elsewhere
    assert config["timeout"] is None
    assert config["chunk_size"] is None
    if mode in ("process", "async_process"):
        assert config["start_method"] in ("forkserver", "spawn")


def test_info_of_a_map_with_a_cache_and_rate_limit_in_process_mode() -> None:
    """The parent keeps the cache and the rate limit; the info still shows the retries."""
    mapped = opmap(mode="process", progress=False, cache=True, rate_limit=1000, retries=2)(keyed)
    info = get_opero_info(mapped)
    assert info["configuration"]["retries"] == 2
    assert info["layers"] == ["cache", "rate_limit", "retry"]
    assert info["cache"] is not None
