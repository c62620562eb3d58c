"""A map's key pool and ``circuit_breaker=`` are one per map, in every @opmap mode (issue 14, 5).

Process modes: the parent holds the candidates' breakers and budgets and the
function's breaker; the workers ask it (``concurrency/pool_link.py``).  Thread and
async maps share the function's own pool (one process).  The calls happen in
other processes, so each one is a line in a file (``pid key start``), and the checks
are counts, never tight timing: a candidate that always fails is called at most
``failure_threshold`` times plus the calls in flight when it opened, across all
workers (per-worker breakers made ``failure_threshold`` calls in *each* worker).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opero import AllFailedError, Breaker, CircuitOpenError, opmap

pytestmark = pytest.mark.timeout(90)

THRESHOLD = 3
WORKERS = 2
ITEMS = 20
#: Each call takes this long, so both workers hold items at once.
WORK = 0.05
BREAKER = Breaker(failure_threshold=THRESHOLD, cooldown=600)
KEYS = ("bad", "good")
COMMON: dict[str, Any] = {"workers": WORKERS, "chunk_size": 1, "progress": False, "retries": 0}


def keyed(
    directory: str, bad: frozenset[str], work: float = WORK, keys: tuple[str, ...] = KEYS
) -> Callable[..., Any]:
    """``call(x, key)``: logs ``pid key start``, takes ``work`` s, fails for a key in ``bad``.

    ``key`` defaults to ``keys``.  Self-contained (imports inside), so cloudpickle ships
    it by value to any worker.
    """

    def call(x: int, key: list[str] = list(keys)) -> tuple[int, str]:  # noqa: B006
        import os  # noqa: PLC0415
        import time  # noqa: PLC0415

        with open(os.path.join(directory, "calls"), "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {key[0]} {time.monotonic()!r}\n")
        if work:
            time.sleep(work)
        if key[0] in bad:
            msg = "revoked"
            raise RuntimeError(msg)
        return x, key[0]

    return call


def akeyed(
    directory: str, bad: frozenset[str], work: float = WORK, keys: tuple[str, ...] = KEYS
) -> Callable[..., Any]:
    """:func:`keyed` as an ``async def`` function."""

    async def call(x: int, key: list[str] = list(keys)) -> tuple[int, str]:  # noqa: B006
        import asyncio  # noqa: PLC0415
        import os  # noqa: PLC0415
        import time  # noqa: PLC0415

        with open(os.path.join(directory, "calls"), "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {key[0]} {time.monotonic()!r}\n")
        if work:
            await asyncio.sleep(work)
        if key[0] in bad:
            msg = "revoked"
            raise RuntimeError(msg)
        return x, key[0]

    return call


def calls(directory: Path) -> list[tuple[int, str, float]]:
    """Every call made: ``(pid, key, start)``."""
    path = directory / "calls"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    return [(int(pid), key, float(start)) for pid, key, start in rows]


def keys_made(directory: Path, key: str) -> int:
    return sum(k == key for _, k, _ in calls(directory))


async def run(mode: str, mapped: Callable[..., Any], items: list[int]) -> list[Any]:
    """The map's results, awaited when the map is async."""
    if mode in {"async", "async_process"}:
        outcome: Awaitable[list[Any]] = mapped(items)
        return await outcome
    result: list[Any] = mapped(items)
    return result


def make(
    mode: str,
    directory: Path,
    bad: frozenset[str],
    *,
    work: float = WORK,
    keys: tuple[str, ...] = KEYS,
    **settings: Any,
) -> Any:
    factory = akeyed if mode in {"async", "async_process"} else keyed
    return opmap(mode=mode, **{**COMMON, **settings})(factory(str(directory), bad, work, keys))


@pytest.mark.parametrize("mode", ["process", "async_process", "thread", "async"])
@pytest.mark.parametrize("rate", [None, 200])
@pytest.mark.asyncio
async def test_a_failing_candidate_opens_once_for_the_whole_map(
    mode: str, rate: float | None, tmp_path: Path
) -> None:
    """One breaker per map: the bad key gets at most threshold + in-flight calls in all.

    ``rate_limit=`` too: a rate-limited process map's workers lost the pool entirely.
    """
    mapped = make(
        mode,
        tmp_path,
        frozenset({"bad"}),
        arg_fallback="key",
        candidate_breaker=BREAKER,
        rate_limit=rate,
    )
    results = await run(mode, mapped, list(range(ITEMS)))
    assert results == [(x, "good") for x in range(ITEMS)]
    made = calls(tmp_path)
    if mode in {"process", "async_process"}:
        assert len({pid for pid, _, _ in made}) == WORKERS  # both workers ran items
    assert keys_made(tmp_path, "bad") <= THRESHOLD + WORKERS


def test_the_map_statistics_show_the_parent_held_state(tmp_path: Path) -> None:
    """The parent's pool is the one the workers used: its bad candidate is open there."""
    mapped = make(
        "process", tmp_path, frozenset({"bad"}), arg_fallback="key", candidate_breaker=BREAKER
    )
    mapped(list(range(8)))
    pool = mapped.__opero__.pool
    assert [c.state(pool_now()) for c in pool.candidates] == ["open", "closed"]
    assert all(c.in_flight == 0 for c in pool.candidates)
    bad, good = mapped.statistics().candidates  # what statistics() shows: the parent's counts
    assert (bad.state, good.state) == ("open", "closed")
    assert bad.failures == bad.calls == keys_made(tmp_path, "bad") <= THRESHOLD + WORKERS
    assert (good.calls, good.failures, good.in_flight) == (8, 0, 0)


def pool_now() -> float:
    from opero.core import clock  # noqa: PLC0415

    return clock.now()


@pytest.mark.parametrize("mode", ["process", "async_process"])
@pytest.mark.asyncio
async def test_every_candidate_open_ends_each_item_with_circuit_open(
    mode: str, tmp_path: Path
) -> None:
    """Once both keys are open, each remaining item ends with CircuitOpenError, uncalled."""
    mapped = make(
        mode,
        tmp_path,
        frozenset({"bad1", "bad2"}),
        keys=("bad1", "bad2"),
        arg_fallback="key",
        candidate_breaker=BREAKER,
    )
    results = await run(mode, mapped, list(range(ITEMS)))
    assert len(results) == ITEMS
    assert all(isinstance(r, (AllFailedError, CircuitOpenError)) for r in results)
    assert keys_made(tmp_path, "bad1") <= THRESHOLD + WORKERS
    assert keys_made(tmp_path, "bad2") <= THRESHOLD + WORKERS
    shut = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(shut) >= ITEMS - 2 * (THRESHOLD + WORKERS)
    assert all(list(r.candidates) == [0, 1] for r in shut), [r.candidates for r in shut]


@pytest.mark.parametrize("mode", ["process", "async_process"])
@pytest.mark.asyncio
async def test_circuit_breaker_is_shared_by_the_workers(mode: str, tmp_path: Path) -> None:
    """``circuit_breaker=`` (no candidates): one breaker for the whole map."""
    factory = akeyed if mode == "async_process" else keyed
    inner = factory(str(tmp_path), frozenset({"down"}))
    fixed: Callable[..., Any]
    if mode == "async_process":

        async def fixed(x: int) -> Any:
            return await inner(x, ["down"])

    else:

        def fixed(x: int) -> Any:
            return inner(x, ["down"])

    mapped = opmap(mode=mode, circuit_breaker=BREAKER, **COMMON)(fixed)
    results = await run(mode, mapped, list(range(ITEMS)))
    assert len(results) == ITEMS
    assert all(isinstance(r, (AllFailedError, CircuitOpenError)) for r in results)
    assert len({pid for pid, _, _ in calls(tmp_path)}) <= WORKERS
    assert keys_made(tmp_path, "down") <= THRESHOLD + WORKERS
    assert sum(isinstance(r, CircuitOpenError) for r in results) >= ITEMS - THRESHOLD - WORKERS


def most_in_one_second(starts: list[float]) -> int:
    """The most starts in any 1-s window ``[t, t + 1)`` beginning at a start."""
    starts = sorted(starts)
    return max((sum(1 for s in starts[i:] if s < t + 1.0) for i, t in enumerate(starts)), default=0)


@pytest.mark.parametrize("mode", ["process", "async_process"])
@pytest.mark.asyncio
async def test_candidate_budgets_are_shared_by_the_workers(mode: str, tmp_path: Path) -> None:
    """3 keys at 10/s (burst 1), 2 workers, ~1.5 s: no key starts more than 11 calls in 1 s.

    Per-worker budgets let each key start 10/s in *each* worker (about 20 in a second).
    """
    keys = ["k0", "k1", "k2"]
    mapped = make(
        mode,
        tmp_path,
        frozenset(),
        arg_fallback="key",
        candidate_rate_limit=10,
        candidate_rate_limit_burst=1,
        fallback_strategy="least_loaded",
        work=0.0,
    )
    items = list(range(45))
    if mode == "async_process":
        results = await mapped(items, key=keys)
    else:
        results = mapped(items, key=keys)
    assert [r[0] for r in results] == items
    made = calls(tmp_path)
    assert {k for _, k, _ in made} == set(keys)
    for key in keys:
        assert most_in_one_second([t for _, k, t in made if k == key]) <= 11, key


@pytest.mark.parametrize("rate", [None, 10])
def test_an_unreachable_parent_leaves_the_worker_a_local_pool(
    rate: float | None, tmp_path: Path, caplog: pytest.LogCaptureFixture, clock: Any
) -> None:
    """A worker that cannot reach its map (another host) keeps a pool of its own: one WARNING.

    In this process, over a real (missing) socket: the pipeline is the one a worker
    builds from the map's bytes, pointed at a parent that is not there.  With a rate
    limit, the limiter keeps its rate on its own too, behind the same one WARNING.
    """
    import logging  # noqa: PLC0415
    import pickle  # noqa: PLC0415

    from opero.concurrency.map_link import attach  # noqa: PLC0415
    from opero.concurrency.pause_cell import PauseCell  # noqa: PLC0415

    mapped = make(
        "process",
        tmp_path,
        frozenset({"bad"}),
        work=0.0,
        arg_fallback="key",
        candidate_breaker=BREAKER,
        rate_limit=rate,
    )
    shell = pickle.loads(mapped.__opmap__.spec.blob)()
    cell = PauseCell()
    kind = "cell" if rate is None else "server"
    wire = (kind, cell.path, (str(tmp_path / "no-socket"), b"k" * 16))
    with caplog.at_level(logging.WARNING, logger="opero"):
        for x in range(10):
            attach(shell.pipeline, (wire, 0.0))
            assert shell.call(x) == (x, "good")
    assert keys_made(tmp_path, "bad") == THRESHOLD  # the local breaker opened
    warned = [r for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(warned) == 1
    if rate is not None:  # 13 starts at 10/s on the worker's own limiter
        assert sum(clock.sleeps) == pytest.approx(1.2)


# -- the protocol, in this process on the fake clock ------------------------------------------
# Worker pipelines built here as a worker builds them (`worker_shell` over `linked_pipeline`),
# linked to the map's parent over its real socket: two "workers" side by side, one clock.


def linked_workers(mapped: Any, count: int) -> list[Any]:
    """``count`` worker shells of the process map ``mapped``, each linked to its parent."""
    import functools  # noqa: PLC0415

    from opero.concurrency.map_link import attach  # noqa: PLC0415
    from opero.concurrency.scope_link import linked_pipeline  # noqa: PLC0415
    from opero.core import clock  # noqa: PLC0415
    from opero.core.assemble import build_pipeline  # noqa: PLC0415
    from opero.core.shell import worker_shell  # noqa: PLC0415

    parent = mapped.__opero__
    wire = mapped.__opmap__.link.wire()
    factory = functools.partial(linked_pipeline, build_pipeline)
    shells = [worker_shell(factory, parent.func, dict(parent.config)) for _ in range(count)]
    for shell in shells:
        attach(shell.pipeline, (wire, clock.now()))
    return shells


PROBE = Breaker(failure_threshold=1, cooldown=10, half_open_calls=1)
KEYED: dict[str, Any] = {"arg_fallback": "key", "retries": 0, "progress": False}


def test_a_half_open_probe_goes_to_one_worker_only(clock: Any) -> None:
    """While one worker's probe is out, another worker's call is refused without a call."""
    made: list[tuple[str, str]] = []
    workers: list[Any] = []

    def call(x: str, key: list[str] = ["bad"]) -> str:  # noqa: B006
        made.append((x, key[0]))
        if x == "probe":  # the second worker calls while this probe is in flight
            with pytest.raises(CircuitOpenError):
                workers[1].call("inner")
        raise RuntimeError(x)

    mapped = opmap(mode="process", candidate_breaker=PROBE, **KEYED)(call)
    workers.extend(linked_workers(mapped, 2))
    with pytest.raises(AllFailedError):
        workers[0].call("open")
    clock.advance(10)
    with pytest.raises(AllFailedError):
        workers[0].call("probe")
    assert made == [("open", "bad"), ("probe", "bad")]
    assert mapped.__opero__.pool.candidates[0].state(clock.now()) == "open"  # the probe failed


def test_a_rest_asked_on_one_worker_holds_every_worker(clock: Any) -> None:
    """A candidate's Retry-After rests it in the parent: the other worker moves on at once."""
    made: list[tuple[int, str]] = []

    def call(x: int, key: list[str] = ["k0", "k1"]) -> str:  # noqa: B006
        made.append((x, key[0]))
        if x == 0 and key[0] == "k0":
            error = RuntimeError("429")
            error.retry_after = 5.0  # type: ignore[attr-defined]
            raise error
        return key[0]

    mapped = opmap(mode="process", candidate_breaker=True, **KEYED)(call)
    one, two = linked_workers(mapped, 2)
    assert one.call(0) == "k1"
    assert two.call(1) == "k1"  # k0 rests for every worker: not called
    clock.advance(5)
    assert two.call(2) == "k0"
    assert made == [(0, "k0"), (0, "k1"), (1, "k1"), (2, "k0")]


def test_a_budget_slot_is_booked_with_the_parent(clock: Any) -> None:
    """One key at 1/s (burst 1): the second worker's call waits for the slot after the first's."""

    def call(x: int, key: list[str] = ["k0"]) -> int:  # noqa: B006
        return x

    mapped = opmap(mode="process", candidate_rate_limit=1, **KEYED)(call)
    one, two = linked_workers(mapped, 2)
    assert (one.call(0), two.call(1), one.call(2)) == (0, 1, 2)
    assert sum(clock.sleeps) == pytest.approx(2.0)


def test_a_dead_worker_gives_its_probe_permit_back(clock: Any) -> None:
    """A worker that dies holding the half-open probe does not keep the candidate shut."""
    import time  # noqa: PLC0415

    from opero.concurrency.pool_link import channel_of  # noqa: PLC0415

    made: list[str] = []

    def call(x: str, key: list[str] = ["k0"]) -> str:  # noqa: B006
        made.append(x)
        if x == "open":
            raise RuntimeError(x)
        return key[0]

    mapped = opmap(mode="process", candidate_breaker=PROBE, **KEYED)(call)
    one, two = linked_workers(mapped, 2)
    with pytest.raises(AllFailedError):
        one.call("open")
    clock.advance(10)
    assert one.pipeline.pool.order(1, clock.now()) == [0]  # the probe is one's, in flight
    health = mapped.__opero__.pool.candidates
    assert health[0].in_flight == 1
    with pytest.raises(CircuitOpenError):
        two.call("refused")
    channel = channel_of(one.pipeline)
    assert channel is not None
    channel._connection[1].close()  # the worker is gone
    patience = time.monotonic() + 5.0
    while health[0].in_flight and time.monotonic() < patience:
        time.sleep(0.005)
    assert two.call("after") == "k0"  # the permit came back: two probed, and closed it
    assert made == ["open", "after"]
    assert health[0].state(clock.now()) == "closed"


@pytest.fixture
def private_redis() -> Iterator[dict[str, Any]]:
    """A redis-server of this test's own on a free port: its connection settings."""
    import shutil  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    from redis_server import redis_answers  # noqa: PLC0415

    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        patience = time.monotonic() + 10
        while not redis_answers("127.0.0.1", port):
            assert time.monotonic() < patience, "the test's redis-server did not start"
            time.sleep(0.02)
        yield {"host": "127.0.0.1", "port": port}
    finally:
        server.terminate()
        server.wait(10)


def test_redis_breakers_need_no_parent(tmp_path: Path, private_redis: dict[str, Any]) -> None:
    """``breaker_backend="redis"``: the workers' own pools share redis; no socket is opened."""
    mapped = make(
        "process",
        tmp_path,
        frozenset({"bad"}),
        arg_fallback="key",
        candidate_breaker=BREAKER,
        breaker_backend="redis",
        breaker_backend_config=private_redis,
        rate_limit_scope="test-map-key-pools",
    )
    assert mapped(list(range(ITEMS))) == [(x, "good") for x in range(ITEMS)]
    assert mapped.__opmap__.link.wire()[2] is None  # no ScopeServer for the pool
    assert keys_made(tmp_path, "bad") <= THRESHOLD + WORKERS
