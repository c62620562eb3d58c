"""``@opmap(mode="dask")`` on a real ``distributed.LocalCluster`` (CONTRACT 17-22).

Two worker processes with one thread each (see ``conftest.py``).  The mapped
functions run in those processes, so calls are counted as lines in files under
``tmp_path``, and start times are wall-clock seconds (one clock on one host).
The cache and the shared rate limit use the real redis-server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import dask_helpers as h
from dask_helpers import wait_idle, worker_pids

from opero import (
    AllFailedError,
    CancelledItemError,
    ConcurrencyError,
    ConfigurationError,
    opmap,
)

pytestmark = pytest.mark.timeout(60)

SQUARES = [x * x for x in range(16)]


def dask_map(client: Any, **settings: Any) -> Any:
    """``opmap(mode="dask", client=client, progress=False, **settings)``."""
    return opmap(mode="dask", client=client, **{"progress": False, **settings})


class Background:
    """``call()`` in a helper thread, so a hung map fails the test with a message."""

    def __init__(self, call: Any) -> None:
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Any) -> None:
        try:
            self.outcome["value"] = call()
        except BaseException as exc:
            self.outcome["error"] = exc

    def result(self, within: float) -> Any:
        """The call's value (or its exception, raised); fails if not done ``within`` seconds."""
        self.thread.join(within)
        if self.thread.is_alive():
            pytest.fail(f"the map did not return within {within} s (hung)")
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["value"]


def run_script(script: str, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that can import ``dask_helpers``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(h.HERE), *sys.path])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


# -- results ---------------------------------------------------------------------------------------
def test_results_come_back_in_input_order(dask_client: Any) -> None:
    mapped = dask_map(dask_client, chunk_size=4)(h.zero_is_slow)
    # Item 0's chunk takes 0.3 s, the others are quick: they finish first.
    assert mapped(range(16)) == SQUARES


def test_unordered_results_are_complete_and_in_completion_order(dask_client: Any) -> None:
    mapped = dask_map(dask_client, chunk_size=4, ordered=False)(h.zero_is_slow)
    results = mapped(range(16))
    assert sorted(results) == sorted(SQUARES)
    # Item 0's chunk takes 0.3 s; a quick chunk comes back before it.
    assert results[:4] != [0, 1, 4, 9]
    assert 0 not in results[:4]


def test_items_run_on_the_cluster_workers(dask_client: Any) -> None:
    results = dask_map(dask_client, chunk_size=1)(h.whoami)(range(8))
    assert set(results) <= worker_pids(dask_client)
    assert os.getpid() not in results


def test_lambda_and_extra_arguments_travel(dask_client: Any) -> None:
    offset = 100
    mapped = dask_map(dask_client)(lambda x, scale, *, plus=0: x * scale + offset + plus)
    assert mapped(range(5), 3, plus=1) == [x * 3 + 101 for x in range(5)]


def test_empty_input_gives_an_empty_list(dask_client: Any) -> None:
    assert dask_map(dask_client)(h.square)([]) == []


# -- per-item failures, retries, fallback -----------------------------------------------------
def test_failures_stay_in_their_slots(dask_client: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = dask_map(
        dask_client, chunk_size=3, retries=1, min_delay=0.001, retry_on=ConnectionError
    )(h.fail_on_three)
    results = mapped(range(8), str(runs))

    assert len(results) == 8
    assert [r for i, r in enumerate(results) if i not in (3, 4)] == [
        x * x for x in range(8) if x not in (3, 4)
    ]
    assert isinstance(results[3], AllFailedError)
    assert results[3].attempt_count == 2
    assert [type(e) for e in results[3].errors] == [ConnectionError, ConnectionError]
    assert isinstance(results[4], KeyError), "a non-retryable error comes back unwrapped"
    ran = Counter(h.items_run(runs))
    assert ran[3] == 2
    assert ran[4] == 1
    assert all(ran[x] == 1 for x in (0, 1, 2, 5, 6, 7))


def test_retries_run_on_the_workers(dask_client: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = dask_map(dask_client, chunk_size=2, retries=2, min_delay=0.001)(h.fail_first_attempt)
    assert mapped(range(6), str(runs)) == [x * 10 for x in range(6)]

    ran = Counter(h.items_run(runs))
    assert ran == dict.fromkeys(range(6), 2), "each item: one failure, one success"
    pids = h.pids_run(runs)
    assert pids <= worker_pids(dask_client)
    assert os.getpid() not in pids
    # The retry happens beside the first attempt, in the same worker process.
    by_item: dict[int, set[int]] = {}
    for line in h.lines(runs):
        pid, item = map(int, line.split())
        by_item.setdefault(item, set()).add(pid)
    assert all(len(p) == 1 for p in by_item.values())


def test_arg_fallback_walks_the_candidates_on_the_worker(dask_client: Any) -> None:
    mapped = dask_map(dask_client, arg_fallback="key", retries=0)(h.with_key)
    assert mapped(range(4), key=["revoked", "good"]) == [f"{x}:good" for x in range(4)]

    failed = mapped([7], key=["revoked", "expired"])
    assert isinstance(failed[0], AllFailedError)
    assert [type(e) for e in failed[0].errors] == [PermissionError, PermissionError]


def test_a_finished_map_leaves_no_task_on_the_cluster(dask_cluster: Any, tmp_path: Path) -> None:
    """Results that hold per-item exceptions must not keep the chunks' tasks alive.

    A task the client still wants stays in worker memory, and when that worker is
    lost the scheduler runs it again: every item of a finished chunk would be called
    a second time, long after its map returned.
    """
    from distributed import Client  # noqa: PLC0415

    with Client(dask_cluster.scheduler_address, set_as_default=False) as own:
        mapped = dask_map(own, chunk_size=4, retries=0, retry_on=ConnectionError)(h.fail_on_three)
        results = mapped(range(8), str(tmp_path / "runs.txt"))
        assert isinstance(results[3], AllFailedError)
        deadline = time.monotonic() + 1.0
        while own.futures and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(own.futures) == [], "the client still holds the map's tasks"


# -- cache and rate limit, shared through redis ----------------------------------------------------
def test_redis_cache_is_shared_by_maps_and_submitting_processes(
    dask_cluster: Any, dask_client: Any, redis_namespace: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    settings = {
        "cache": True,
        "cache_backend": "redis",
        "cache_backend_config": h.REDIS_CONFIG,
        "cache_namespace": redis_namespace,
    }
    mapped = dask_map(dask_client, **settings)(h.logged_square)

    assert mapped([1, 2, 3, 4], str(runs)) == [1, 4, 9, 16]
    assert sorted(h.items_run(runs)) == [1, 2, 3, 4]
    assert mapped([1, 2, 3, 4], str(runs)) == [1, 4, 9, 16]
    assert len(h.lines(runs)) == 4, "a cached item ran again"
    assert mapped.statistics().cache_hits == 4

    # Another submitting process, on the same cluster by its address: 1-4 are hits there
    # too, and only 5 goes to the workers.
    child = run_script(
        """
        import json, sys
        from dask_helpers import REDIS_CONFIG, logged_square
        from opero import opmap

        address, path, namespace = sys.argv[1:4]
        mapped = opmap(mode="dask", client=address, progress=False, cache=True,
                       cache_backend="redis", cache_backend_config=REDIS_CONFIG,
                       cache_namespace=namespace)(logged_square)
        print(json.dumps([mapped([1, 2, 3, 4, 5], path), mapped.statistics().cache_hits]))
        """,
        dask_cluster.scheduler_address,
        str(runs),
        redis_namespace,
    )
    assert child.returncode == 0, child.stderr
    results, hits = json.loads(child.stdout.strip().splitlines()[-1])
    assert results == [1, 4, 9, 16, 25]
    assert hits == 4
    assert sorted(h.items_run(runs)) == [1, 2, 3, 4, 5]

    # ...and what the other process stored is a hit here.
    assert mapped([5], str(runs)) == [25]
    assert len(h.lines(runs)) == 5


RATE = 10  # calls per second: 100 ms between starts


def _rate_settings(group: str) -> dict[str, Any]:
    return {
        "rate_limit": RATE,
        "rate_limit_scope": group,
        "rate_limit_backend": "redis",
        "rate_limit_backend_config": h.REDIS_CONFIG,
    }


def test_redis_rate_limit_spaces_starts_across_the_workers(
    dask_client: Any, redis_namespace: str
) -> None:
    mapped = dask_map(dask_client, **_rate_settings(f"{redis_namespace}-rate"))(h.started_at)
    begin = time.time()
    outcomes = mapped(range(9))
    took = time.time() - begin

    starts = sorted(at for _, at in outcomes)
    # The k-th start may not come before k intervals after the map began, on any worker.
    for k, at in enumerate(starts):
        assert at - begin >= k / RATE - 0.005, f"start {k} came {at - begin:.3f} s in"
    assert starts[-1] - starts[0] >= 8 / RATE - 0.05
    assert took < 8 / RATE + 0.6
    assert {pid for pid, _ in outcomes} <= worker_pids(dask_client)


def test_redis_rate_limit_holds_across_submitting_processes(
    dask_cluster: Any, dask_client: Any, redis_namespace: str, tmp_path: Path
) -> None:
    """Two processes map at once over one redis group: together they keep the rate."""
    group = f"{redis_namespace}-rate2"
    ready, go = tmp_path / "ready", tmp_path / "go"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import json, os, sys, time
                from dask_helpers import REDIS_CONFIG, started_at
                from opero import opmap

                address, group, ready, go = sys.argv[1:5]
                mapped = opmap(mode="dask", client=address, progress=False, rate_limit=10,
                               rate_limit_scope=group, rate_limit_backend="redis",
                               rate_limit_backend_config=REDIS_CONFIG)(started_at)
                mapped([])  # connected before the race starts
                open(ready, "w").close()
                while not os.path.exists(go):
                    time.sleep(0.002)
                print(json.dumps(mapped(range(5))))
                """
            ),
            dask_cluster.scheduler_address,
            group,
            str(ready),
            str(go),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(h.HERE), *sys.path])},
    )
    try:
        mapped = dask_map(dask_client, **_rate_settings(group))(h.started_at)
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline, "the second process did not get ready"
            time.sleep(0.01)
        go.touch()
        mine = mapped(range(5))
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    theirs = [tuple(pair) for pair in json.loads(out.strip().splitlines()[-1])]

    # The two maps ran at the same time...
    assert min(at for _, at in theirs) < max(at for _, at in mine)
    assert min(at for _, at in mine) < max(at for _, at in theirs)
    # ...and their 10 starts together are spaced as one map of 10 at 10/s: two
    # separate limiters would make it 20/s, done in half the time.
    starts = sorted(at for _, at in mine + theirs)
    assert starts[-1] - starts[0] >= 9 / RATE - 0.05, [round(at - starts[0], 3) for at in starts]
    # At 10/s a 0.35 s window holds at most 4 starts (one more for a late dispatch).
    crowded = [
        k
        for k in range(len(starts))
        if sum(starts[k] <= at < starts[k] + 0.35 for at in starts) > 5
    ]
    assert crowded == [], [round(at - starts[0], 3) for at in starts]


# -- workers dying ---------------------------------------------------------------------------------
def test_a_worker_killed_mid_map_loses_no_item(
    private_cluster: tuple[Any, Any], tmp_path: Path
) -> None:
    _, client = private_cluster
    victim = sorted(worker_pids(client))[0]
    runs = tmp_path / "runs.txt"
    mapped = dask_map(client, chunk_size=1)(h.slow_logged_square)
    running = Background(lambda: mapped(range(12), str(runs)))
    deadline = time.monotonic() + 20
    while victim not in h.pids_run(runs):  # the victim is in the middle of an item (0.15 s)
        assert time.monotonic() < deadline, "the victim never started an item"
        time.sleep(0.005)
    os.kill(victim, signal.SIGKILL)
    killed_item = [int(line.split()[1]) for line in h.lines(runs) if line.startswith(f"{victim} ")][
        -1
    ]

    assert running.result(within=30) == [x * x for x in range(12)]
    ran = Counter(h.items_run(runs))
    assert set(ran) == set(range(12))
    assert ran[killed_item] >= 2, "the item the killed worker held ran again elsewhere"


def test_an_item_that_always_kills_its_worker_is_a_concurrency_error(
    one_death_cluster: tuple[Any, Any],
) -> None:
    _, client = one_death_cluster
    mapped = dask_map(client, chunk_size=4)(h.die_on_three)
    began = time.monotonic()
    results = Background(lambda: mapped(range(8))).result(within=30)
    took = time.monotonic() - began

    assert len(results) == 8
    assert isinstance(results[3], ConcurrencyError), h.plain(results[3])
    assert "KilledWorker" in str(results[3])
    # Its chunk-mates (0, 1, 2) and the other chunk are not charged.
    assert [h.plain(r) for i, r in enumerate(results) if i != 3] == [
        x * x for x in range(8) if x != 3
    ]
    assert took < 30


# -- which client ----------------------------------------------------------------------------------
def test_no_client_anywhere_is_a_configuration_error_at_map_time() -> None:
    child = run_script(
        """
        from opero import ConfigurationError, opmap

        mapped = opmap(mode="dask", progress=False)(lambda x: x)  # no client needed yet
        try:
            mapped([1, 2])
        except ConfigurationError as error:
            print("ConfigurationError:", error)
        else:
            print("no error")
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("ConfigurationError:")
    assert "Client(" in child.stdout
    assert "client=" in child.stdout


def test_client_none_uses_the_current_client(dask_client: Any) -> None:
    mapped = opmap(mode="dask", progress=False, chunk_size=1)(h.whoami)
    with dask_client.as_current():
        results = mapped(range(4))
    assert set(results) <= worker_pids(dask_client)


def test_client_none_finds_the_current_client_for_an_async_map(dask_client: Any) -> None:
    mapped = opmap(mode="dask", progress=False, chunk_size=1)(h.awhoami)
    with dask_client.as_current():
        results = asyncio.run(mapped(range(4)))
    assert set(results) <= worker_pids(dask_client)


def test_a_scheduler_address_string_works(dask_cluster: Any, dask_client: Any) -> None:
    mapped = opmap(mode="dask", client=dask_cluster.scheduler_address, progress=False)(h.whoami)
    results = mapped(range(6))
    assert len(results) == 6
    assert set(results) <= worker_pids(dask_client)
    assert dask_map(dask_cluster.scheduler_address)(h.square)(range(16)) == SQUARES


def test_a_closed_client_is_a_configuration_error(dask_cluster: Any) -> None:
    from distributed import Client  # noqa: PLC0415

    client = Client(dask_cluster.scheduler_address, set_as_default=False)
    client.close()
    mapped = dask_map(client)(h.square)
    with pytest.raises(ConfigurationError, match="closed"):
        mapped([1])


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"mode": "thread", "client": "tcp://127.0.0.1:8786"}, "client"),
        ({"mode": "process", "client": "tcp://127.0.0.1:8786"}, "client"),
        ({"client": "tcp://127.0.0.1:8786"}, "client"),  # mode defaults to thread
        ({"mode": "dask", "start_method": "spawn"}, "start_method"),
        ({"mode": "dask", "client": 8786}, "client must be"),
        ({"mode": "dask", "client": object()}, "client must be"),
    ],
)
def test_bad_cluster_settings_fail_at_decoration(settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        opmap(**settings)


def test_a_real_client_with_another_mode_fails_at_decoration(dask_client: Any) -> None:
    with pytest.raises(ConfigurationError, match="client"):
        opmap(mode="thread", client=dask_client)


# -- async functions -------------------------------------------------------------------------------
def test_async_function_gives_an_awaitable_map_with_a_loop_per_chunk(dask_client: Any) -> None:
    mapped = dask_map(dask_client, chunk_size=10)(h.asleepy_square)
    assert inspect.iscoroutinefunction(mapped)
    began = time.monotonic()
    results = asyncio.run(mapped(range(20)))
    took = time.monotonic() - began
    assert results == [x * x for x in range(20)]
    # Ten items of 0.2 s per chunk run together on the worker's loop, not one by one (2 s).
    assert took < 1.2


def test_async_function_retries_on_the_worker(dask_client: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = dask_map(dask_client, retries=1, min_delay=0.001, chunk_size=1)(h.afail_first_attempt)
    assert asyncio.run(mapped(range(4), str(runs))) == [0, 10, 20, 30]
    assert Counter(h.items_run(runs)) == dict.fromkeys(range(4), 2)
    assert h.pids_run(runs) <= worker_pids(dask_client)


def test_async_imap(dask_client: Any) -> None:
    mapped = dask_map(dask_client, chunk_size=3)(h.asleepy_square)

    async def collect() -> list[int]:
        return [value async for value in mapped.imap(range(7))]

    assert asyncio.run(collect()) == [x * x for x in range(7)]


# -- timeout, should_process ---------------------------------------------------------------------
def test_timeout_fails_only_the_late_item(dask_client: Any) -> None:
    mapped = dask_map(dask_client, timeout=0.3)(h.nap)
    began = time.monotonic()
    results = mapped([0.9, 0.0])
    took = time.monotonic() - began
    assert isinstance(results[0], TimeoutError)
    assert results[1] == 0.0
    assert took < 0.8, "the map waited for the late item"
    # The late item's task is cancelled: the scheduler lets go of it.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        held = dask_client.run_on_scheduler(
            lambda dask_scheduler: sum(
                ts.state == "processing" for ts in dask_scheduler.tasks.values()
            )
        )
        if held == 0:
            break
        time.sleep(0.02)
    assert held == 0, "the timed-out task is still processing on the scheduler"


def test_timeout_does_not_charge_items_queued_behind_stuck_ones(dask_client: Any) -> None:
    """Both worker threads are stuck past the timeout; the quick items wait, then run.

    A timeout is the time an item may *run* (README, ``@opmap`` docstring); items that
    never started were not late.
    """
    mapped = dask_map(dask_client, timeout=0.3)(h.nap)
    results = mapped([0.9, 0.9, 0.0, 0.0, 0.0])
    assert [h.plain(r) for r in results] == ["DeadlineExceeded", "DeadlineExceeded", 0.0, 0.0, 0.0]


def test_should_process_stops_sending_items(dask_client: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    asked: list[None] = []

    def keep_going() -> bool:
        asked.append(None)
        return len(asked) <= 4

    mapped = dask_map(dask_client, should_process=keep_going)(h.logged_square)
    results = mapped(range(10), str(runs))
    assert results[:4] == [0, 1, 4, 9]
    assert all(isinstance(r, CancelledItemError) for r in results[4:])
    assert sorted(h.items_run(runs)) == [0, 1, 2, 3], "a stopped item ran"


# -- imap ------------------------------------------------------------------------------------------
def test_imap_yields_in_order_and_imap_unordered_yields_all(dask_client: Any) -> None:
    mapped = dask_map(dask_client, chunk_size=4)(h.zero_is_slow)
    assert list(mapped.imap(range(16))) == SQUARES
    unordered = list(mapped.imap_unordered(range(16)))
    assert sorted(unordered) == sorted(SQUARES)
    assert 0 not in unordered[:4]


def test_imap_is_lazy_on_an_endless_input(dask_client: Any) -> None:
    pulled = [0]
    mapped = dask_map(dask_client)(h.square)
    iterator = mapped.imap(h.bounded_count(20_000, pulled))
    assert list(itertools.islice(iterator, 10)) == [x * x for x in range(10)]
    iterator.close()
    assert pulled[0] < 20_000


# -- progress --------------------------------------------------------------------------------------
def test_progress_summary_on_stderr(dask_client: Any, capfd: pytest.CaptureFixture[str]) -> None:
    # stderr is not a terminal here: progress=True leaves one summary line, no bar frames.
    mapped = opmap(mode="dask", client=dask_client, progress=True)(h.square)
    assert mapped(range(20)) == [x * x for x in range(20)]
    out, err = capfd.readouterr()
    assert out == ""
    assert "\r" not in err
    assert err.count("\n") == 1
    assert err.startswith("square: 20 items, 0 failed, ")


def test_progress_off_draws_no_bar(dask_client: Any, capfd: pytest.CaptureFixture[str]) -> None:
    mapped = opmap(mode="dask", client=dask_client, progress=False)(h.square)
    assert mapped(range(20)) == [x * x for x in range(20)]
    out, err = capfd.readouterr()
    assert out == ""
    assert "20/20" not in err
    assert "%|" not in err


# -- chunks ----------------------------------------------------------------------------------------
def test_automatic_chunks_make_few_tasks_of_many_items(dask_client: Any) -> None:
    keys = dask_map(dask_client)(h.task_key)(range(20_000))
    assert len(keys) == 20_000
    tasks = Counter(keys)
    threads = sum(dask_client.nthreads().values())
    # About four chunks per cluster thread: 20,000 items are a handful of tasks, not 20,000.
    assert 2 * threads <= len(tasks) <= 8 * threads, len(tasks)
    assert all(key.startswith("run_chunk_in_worker") for key in tasks)


def test_chunk_size_sets_the_items_per_task(dask_client: Any) -> None:
    one = dask_map(dask_client, chunk_size=1)(h.task_key)(range(30))
    assert len(set(one)) == 30
    seven = dask_map(dask_client, chunk_size=7)(h.task_key)(range(30))
    assert sorted(Counter(seven).values()) == [2, 7, 7, 7, 7]
    # A chunk is consecutive items.
    assert all(len(set(seven[start : start + 7])) == 1 for start in range(0, 28, 7))


def test_workers_limits_the_batches_running_at_once(dask_client: Any) -> None:
    """``workers=`` with mode="dask": how many batches run at once (``@opmap`` docstring)."""
    mapped = dask_map(dask_client, workers=1, chunk_size=1)(h.span)
    spans = sorted((began, ended) for _, began, ended in mapped(range(4), 0.15))
    overlaps = [
        (round(a[1] - b[0], 3)) for a, b in itertools.pairwise(spans) if b[0] < a[1] - 0.005
    ]
    assert overlaps == [], f"batches overlapped by {overlaps} s with workers=1"


def test_a_timed_out_item_frees_its_worker_thread(dask_client: Any) -> None:
    """The deadline is kept on the worker, and the worker's task thread is free at once.

    The late item goes on in a thread of its own; the idle check the other tests rely
    on sees it until it returns.
    """
    mapped = dask_map(dask_client, timeout=0.1)(h.nap)
    assert isinstance(mapped([0.5])[0], TimeoutError)
    assert h.busy_threads(dask_client) == (0, 1)
    wait_idle(dask_client)
    assert h.busy_threads(dask_client) == (0, 0)


# -- leaving early and cancelling ----------------------------------------------------------------
def released_within(client: Any, seconds: float) -> bool:
    """Whether ``client`` holds no task any more within ``seconds``."""
    deadline = time.monotonic() + seconds
    while client.futures and time.monotonic() < deadline:
        time.sleep(0.02)
    return not client.futures


def test_leaving_an_imap_early_cancels_its_tasks(dask_cluster: Any) -> None:
    """Items 2.. take 1.5 s: only a cancel (not their end) can release them within 0.5 s."""
    from distributed import Client  # noqa: PLC0415

    with Client(dask_cluster.scheduler_address, set_as_default=False) as own:
        mapped = dask_map(own, chunk_size=1)(h.nap)
        results = mapped.imap([0.0, 0.0] + [1.5] * 10)
        assert [next(results), next(results)] == [0.0, 0.0]
        results.close()
        assert released_within(own, 0.5), f"tasks stayed on the cluster: {sorted(own.futures)}"


def test_cancelling_an_async_map_cancels_its_tasks(dask_cluster: Any) -> None:
    from distributed import Client  # noqa: PLC0415

    with Client(dask_cluster.scheduler_address, set_as_default=False) as own:
        mapped = dask_map(own, chunk_size=1)(h.anap)

        async def run() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(mapped([0.0, 0.0] + [1.5] * 10), timeout=0.5)

        began = time.monotonic()
        asyncio.run(run())
        assert time.monotonic() - began < 1.5
        assert released_within(own, 0.5), f"tasks stayed on the cluster: {sorted(own.futures)}"


def test_duplicates_in_one_map_run_once(dask_client: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    mapped = dask_map(dask_client, chunk_size=1, cache=True)(h.logged_square)
    items = [1, 2, 1, 3, 2, 1]
    assert mapped(items, str(runs)) == [x * x for x in items]
    assert sorted(h.items_run(runs)) == [1, 2, 3]
    assert mapped.statistics().cache_hits == 3
