"""opero.instrumentation hooks: typed events for every call, on both shells, and off when off."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import opero.instrumentation as oi
from opero import AllFailedError, Breaker, opero, opmap
from opero.core import events
from opero.testing import FakeClock
from redis_server import redis_answers
from shells import Shell

SECRET = "sk-live-TOPSECRET-0123456789"


@pytest.fixture
def got() -> Iterator[list[oi.Event]]:
    """The events a hook received during the test; every listener gone afterwards."""
    received: list[oi.Event] = []
    oi.set_hooks([received.append])
    yield received
    oi.set_hooks(None)
    oi.enable()


def kinds(received: list[oi.Event]) -> list[str]:
    return [type(event).__name__ for event in received]


def test_a_retried_call_reports_each_attempt_its_backoff_and_its_end(
    clock: FakeClock, shell: Shell, got: list[oi.Event]
) -> None:
    calls = []

    def body(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("down")
        return x

    f = opero(retries=2, min_delay=0.5)(shell.fn(body))
    assert shell.call(f, 3) == 3
    assert kinds(got) == ["AttemptEnded", "Waited", "AttemptEnded", "CallEnded"]
    first, waited, second, ended = got
    assert isinstance(first, oi.AttemptEnded)
    assert (first.attempt, first.kind, first.ok, first.error_type) == (
        1,
        "first",
        False,
        "ConnectionError",
    )
    assert first.candidate is None
    assert first.function.endswith("body")
    assert isinstance(waited, oi.Waited)
    assert (waited.reason, waited.seconds) == ("backoff", 0.5)
    assert isinstance(second, oi.AttemptEnded)
    assert (second.attempt, second.kind, second.ok, second.error_type) == (2, "retry", True, None)
    assert isinstance(ended, oi.CallEnded)
    assert (ended.outcome, ended.attempts, ended.error_type) == ("success", 2, None)
    assert ended.duration == pytest.approx(0.5)


def test_a_success_is_one_attempt_and_one_call(shell: Shell, got: list[oi.Event]) -> None:
    f = opero()(shell.fn(lambda x: x * 2))
    assert shell.call(f, 4) == 8
    assert kinds(got) == ["AttemptEnded", "CallEnded"]


def test_fallback_candidates_are_named_by_index_never_by_value(
    clock: FakeClock, shell: Shell, got: list[oi.Event]
) -> None:
    def body(item: str, key: list[str]) -> str:
        if key[0] == SECRET:
            raise PermissionError(f"revoked {key[0]}")
        return item

    f = opero(retries=0, arg_fallback="key")(shell.fn(body))
    assert shell.call(f, "a", [SECRET, "other"]) == "a"
    attempts = [e for e in got if isinstance(e, oi.AttemptEnded)]
    assert [(e.candidate, e.kind, e.ok) for e in attempts] == [
        (0, "first", False),
        (1, "fallback", True),
    ]
    assert all(SECRET not in repr(event) for event in got)


def test_a_final_failure_and_an_unrouted_error(
    clock: FakeClock, shell: Shell, got: list[oi.Event]
) -> None:
    def down() -> None:
        raise ConnectionError("down")

    def wrong() -> None:
        raise KeyError("x")

    f = opero(retries=1, retry_on=ConnectionError)(shell.fn(down))
    with pytest.raises(AllFailedError):
        shell.call(f)
    g = opero(retries=1, retry_on=ConnectionError)(shell.fn(wrong))
    with pytest.raises(KeyError):
        shell.call(g)
    ends = [e for e in got if isinstance(e, oi.CallEnded)]
    assert [(e.outcome, e.error_type, e.attempts) for e in ends] == [
        ("failure", "AllFailedError", 2),
        ("error", "KeyError", 1),
    ]


def test_retry_after_and_rate_limit_waits_say_why(
    clock: FakeClock, shell: Shell, got: list[oi.Event]
) -> None:
    calls = []

    def body() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("quota")
        return "ok"

    f = opero(retries=1, retry_after=lambda _error: 3.0)(shell.fn(body))
    assert shell.call(f) == "ok"
    g = opero(rate_limit=2.0)(shell.fn(lambda: "ok"))
    assert shell.call(g) == "ok"
    assert shell.call(g) == "ok"
    waits = [(e.reason, e.seconds) for e in got if isinstance(e, oi.Waited)]
    assert waits == [("retry_after", 3.0), ("rate_limit", pytest.approx(0.5))]


def test_cache_lookups_report_hit_and_miss(shell: Shell, got: list[oi.Event]) -> None:
    f = opero(cache=True)(shell.fn(lambda x: x + 1))
    assert shell.call(f, 1) == 2
    assert shell.call(f, 1) == 2
    lookups = [e.hit for e in got if isinstance(e, oi.CacheLookup)]
    assert lookups == [False, True]
    assert kinds(got) == ["CacheLookup", "AttemptEnded", "CallEnded", "CacheLookup"]


def test_the_functions_breaker_reports_its_transitions(
    clock: FakeClock, shell: Shell, got: list[oi.Event]
) -> None:
    def down() -> None:
        raise ConnectionError("down")

    f = opero(retries=0, circuit_breaker=Breaker(failure_threshold=1, failure_ratio=None))(
        shell.fn(down)
    )
    with pytest.raises(AllFailedError):
        shell.call(f)
    changes = [e for e in got if isinstance(e, oi.BreakerChanged)]
    assert [(e.candidate, e.old, e.new) for e in changes] == [(None, "closed", "open")]


def test_a_candidates_breaker_is_named_by_index(clock: FakeClock, got: list[oi.Event]) -> None:
    @opero(retries=0, arg_fallback="key", candidate_breaker=Breaker(failure_threshold=1))
    def fetch(key: list[str]) -> str:
        if key[0] == SECRET:
            raise PermissionError("revoked")
        return "ok"

    assert fetch([SECRET, "b"]) == "ok"
    changes = [e for e in got if isinstance(e, oi.BreakerChanged)]
    assert [(e.candidate, e.new) for e in changes] == [(0, "open")]
    assert all(SECRET not in repr(event) for event in got)


def test_a_map_reports_its_items_and_failures(got: list[oi.Event]) -> None:
    @opmap(mode="thread", workers=2, progress=False, retries=0)
    def half(x: int) -> int:
        if x % 2:
            raise ValueError("odd")
        return x

    results = half([0, 1, 2, 3, 4])
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 2, 4]
    ended = [e for e in got if isinstance(e, oi.MapEnded)]
    assert [(e.mode, e.items, e.failures) for e in ended] == [("thread", 5, 2)]


def test_disabled_means_nothing_is_emitted_and_enable_brings_it_back(
    shell: Shell, got: list[oi.Event]
) -> None:
    f = opero(cache=True)(shell.fn(lambda x: x))
    oi.disable()
    assert not oi.is_enabled()
    shell.call(f, 1)
    shell.call(f, 1)
    assert got == []
    oi.enable()
    assert oi.is_enabled()
    shell.call(f, 2)
    assert kinds(got) == ["CacheLookup", "AttemptEnded", "CallEnded"]
    oi.set_hooks(None)
    assert not oi.is_enabled()
    assert oi.get_hooks() == ()


def test_no_telemetry_is_allocated_when_nobody_listens(clock: FakeClock) -> None:
    calls = []

    def body() -> int:
        calls.append(1)
        if len(calls) % 2:
            raise ConnectionError("down")
        return 1

    f = opero(retries=1, cache=False)(body)
    assert not events.on
    tracemalloc.start()
    try:
        for _ in range(200):
            f()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    watched = [
        stat
        for stat in snapshot.statistics("filename")
        if stat.traceback[0].filename.endswith(("core/watch.py", "core/events.py"))
    ]
    assert watched == []


def test_a_failing_hook_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture, got: list[oi.Event]
) -> None:
    def broken(event: oi.Event) -> None:
        raise RuntimeError("hook bug")

    oi.set_hooks([broken, got.append])
    f = opero()(lambda: "ok")
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert f() == "ok"
    assert kinds(got) == ["AttemptEnded", "CallEnded"]
    assert "instrumentation hook" in caplog.text


def test_the_four_callbacks_still_fire_with_hooks_on(clock: FakeClock, got: list[oi.Event]) -> None:
    fired: list[Any] = []
    calls = []

    def body() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        return "ok"

    f = opero(
        retries=1,
        on_retry=lambda error, attempt: fired.append(("retry", attempt)),
        on_success=lambda result: fired.append(("success", result)),
    )(body)
    assert f() == "ok"
    assert fired == [("retry", 1), ("success", "ok")]
    assert "CallEnded" in kinds(got)


def test_events_are_frozen_and_hooks_must_be_callable() -> None:
    event = oi.CacheLookup(function="m.f", correlation_id=None, hit=True)
    with pytest.raises(AttributeError):
        event.hit = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        oi.CacheLookup(function="m.f", hit=True)  # type: ignore[call-arg]
    with pytest.raises(oi.ConfigurationError, match="set_hooks"):  # type: ignore[attr-defined]
        oi.set_hooks([42])  # type: ignore[list-item]


def test_a_key_pool_call_is_reported_like_any_other(shell: Shell, got: list[oi.Event]) -> None:
    f = opero(arg_fallback="key", candidate_breaker=True)(shell.fn(lambda key: "ok"))
    assert shell.call(f, ["a", "b"]) == "ok"
    assert kinds(got) == ["AttemptEnded", "CallEnded"]
    first = got[0]
    assert isinstance(first, oi.AttemptEnded)
    assert (first.candidate, first.ok) == (0, True)


@pytest.fixture
def own_redis() -> Iterator[dict[str, Any]]:
    """A redis-server of this test's own on a free port (never the shared one)."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not redis_answers("127.0.0.1", port):
            assert process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield {"host": "127.0.0.1", "port": port, "socket_connect_timeout": 0.5}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_redis_circuit_breaker_reports_its_transitions(
    own_redis: dict[str, Any], got: list[oi.Event]
) -> None:
    def down() -> None:
        raise ConnectionError("down")

    f = opero(
        retries=0,
        circuit_breaker=Breaker(failure_threshold=1, failure_ratio=None),
        breaker_backend="redis",
        breaker_backend_config=own_redis,
    )(down)
    with pytest.raises(AllFailedError):
        f()
    changes = [e for e in got if isinstance(e, oi.BreakerChanged)]
    assert [(e.candidate, e.old, e.new) for e in changes] == [(None, "closed", "open")]
