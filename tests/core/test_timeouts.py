"""Attempts within a time limit: async ones cut, sync ones abandoned (core/timeouts.py).

On the fake clock the cut is checked to the exact virtual time; against a real local
HTTP server that hangs, and in real time, with generous bounds (the machine is loaded).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from opero import AllFailedError, ConfigurationError, opero
from opero.core.deadline import attempt_bound, remaining
from opero.core.timeouts import TimeoutRunner, acall_within, call_within, runner_for
from opero.testing import FakeClock

#: The longest a hanging request is held; every test gives up on it well before.
HANG = 1.0
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A local HTTP server whose every answer waits until the test ends (at most HANG s)."""
    released = threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            released.wait(HANG)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"late")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        released.set()
        server.shutdown()
        server.server_close()


# -- async: cut at the timeout --------------------------------------------------------


def test_async_attempt_sleeping_on_the_fake_clock_is_cut_at_exactly_its_timeout(
    clock: FakeClock,
) -> None:
    async def attempt() -> str:
        await clock.async_sleep(5)
        return "too late"

    async def main() -> None:
        with pytest.raises(TimeoutError, match="after 1s"):
            await acall_within(attempt, (), {}, 1.0)

    asyncio.run(main())
    assert clock.now() == 1001.0
    assert clock.sleeps == [5.0]  # the timer is not a sleep
    assert not clock._pending  # the timer went with the attempt


def test_a_peer_sleeping_past_the_cut_does_not_move_time_before_the_caller_sees_it(
    clock: FakeClock,
) -> None:
    seen: list[float] = []

    async def attempt() -> None:
        await clock.async_sleep(5)

    async def caller() -> None:
        try:
            await acall_within(attempt, (), {}, 1.0)
        except TimeoutError:
            seen.append(clock.now())
            await clock.async_sleep(0.5)  # a backoff, from the cut
            seen.append(clock.now())

    async def main() -> None:
        await asyncio.gather(caller(), clock.async_sleep(3))

    asyncio.run(main())
    assert seen == [1001.0, 1001.5]
    assert clock.now() == 1003.0


def test_async_attempt_that_ends_in_time_returns_and_sees_its_remaining_time(
    clock: FakeClock,
) -> None:
    async def attempt(x: int, *, y: int) -> tuple[int, float | None]:
        left = remaining()
        await clock.async_sleep(0.25)
        return x + y, left

    async def main() -> tuple[int, float | None]:
        return await acall_within(attempt, (1,), {"y": 2}, 1.0)

    assert asyncio.run(main()) == (3, 1.0)
    assert clock.now() == 1000.25
    assert remaining() is None
    assert not clock._pending


def test_an_attempt_taking_exactly_its_timeout_succeeds(clock: FakeClock) -> None:
    async def attempt() -> str:
        await clock.async_sleep(1)
        return "ok"

    assert asyncio.run(acall_within(attempt, (), {}, 1.0)) == "ok"
    assert clock.now() == 1001.0


def test_async_attempt_error_passes_through_unchanged(clock: FakeClock) -> None:
    async def attempt() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        asyncio.run(acall_within(attempt, (), {}, 1.0))


def test_no_time_left_starts_nothing() -> None:
    called: list[int] = []

    async def attempt() -> None:
        called.append(1)

    for seconds in (0.0, -1.0):
        with pytest.raises(TimeoutError):
            asyncio.run(acall_within(attempt, (), {}, seconds))
        with pytest.raises(TimeoutError):
            call_within(called.append, (1,), {}, seconds)
    assert called == []


def test_outer_cancellation_stays_a_cancelled_error() -> None:
    async def attempt() -> None:
        await asyncio.sleep(HANG)

    async def main() -> None:
        task = asyncio.create_task(acall_within(attempt, (), {}, 0.8))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 has no Task.cancelling()")
def test_outer_cancellation_at_the_moment_of_the_cut_stays_a_cancelled_error(
    clock: FakeClock,
) -> None:
    gate = asyncio.Event()

    async def attempt() -> None:
        await gate.wait()

    async def main() -> None:
        task = asyncio.create_task(acall_within(attempt, (), {}, 1.0))
        await asyncio.sleep(0)
        clock.advance(2)  # the cut cancels the task ...
        task.cancel()  # ... and so does its owner, in the same step
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 has no Task.cancelling()")
def test_an_attempt_that_swallows_the_cut_leaves_its_task_uncancelled(clock: FakeClock) -> None:
    async def stubborn() -> str:
        try:
            await clock.async_sleep(5)
        except asyncio.CancelledError:
            return "kept going"
        return "slept"

    async def main() -> tuple[str, int]:
        result = await acall_within(stubborn, (), {}, 1.0)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a pending cancel would land here
        return result, task.cancelling()

    assert asyncio.run(main()) == ("kept going", 0)


def test_async_real_time_cut_of_a_hanging_http_request(hanging_url: str) -> None:
    async def attempt() -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(hanging_url, timeout=30)).status_code

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await acall_within(attempt, (), {}, 0.3)
        return time.monotonic() - started

    assert 0.29 <= asyncio.run(main()) < 0.8


# -- sync: abandoned at the timeout -----------------------------------------------------


def test_sync_attempt_sleeping_on_the_fake_clock_is_abandoned_at_exactly_its_timeout(
    clock: FakeClock,
) -> None:
    times: list[float] = []
    finished = threading.Event()

    def attempt() -> None:
        clock.sleep(5)
        times.append(clock.now())
        clock.sleep(3)  # abandoned by now: moves the shared clock no further
        times.append(clock.now())
        finished.set()

    with pytest.raises(TimeoutError, match="after 1s"):
        call_within(attempt, (), {}, 1.0)
    assert clock.now() == 1001.0
    assert finished.wait(HANG)
    assert times == [1001.0, 1001.0]
    assert clock.now() == 1001.0
    assert not clock._pending


def test_sync_attempt_runs_in_a_copy_of_the_callers_context(clock: FakeClock) -> None:
    def attempt(x: int, *, y: int) -> tuple[int, float | None, str, bool]:
        clock.sleep(0.5)
        main_thread = threading.current_thread() is threading.main_thread()
        return x + y, remaining(), request_id.get(), main_thread

    token = request_id.set("r-17")
    try:
        assert call_within(attempt, (1,), {"y": 2}, 2.0) == (3, 1.5, "r-17", False)
    finally:
        request_id.reset(token)
    assert clock.now() == 1000.5


def test_sync_attempt_errors_pass_through_even_base_exceptions(clock: FakeClock) -> None:
    def refused() -> None:
        raise ConnectionError("refused")

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(ConnectionError, match="refused"):
        call_within(refused, (), {}, 1.0)
    with pytest.raises(KeyboardInterrupt):
        call_within(interrupted, (), {}, 1.0)


def test_sync_real_time_abandon_of_a_hanging_http_request(hanging_url: str) -> None:
    def attempt() -> int:
        with urllib.request.urlopen(hanging_url) as response:
            return int(response.status)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        call_within(attempt, (), {}, 0.3)
    assert 0.29 <= time.monotonic() - started < 0.8


def test_sync_attempt_passing_remaining_on_ends_by_itself(hanging_url: str) -> None:
    """The recommended pattern: the client's own timeout is the time left.

    A bounded attempt run in the caller's thread (``deadline=`` alone) is not cut; it
    ends on time because its client was given `remaining()`.
    """

    def attempt() -> int:
        left = remaining()
        assert left is not None
        assert 0.0 < left <= 0.3
        return httpx.get(hanging_url, timeout=left).status_code

    started = time.monotonic()
    with attempt_bound(time.monotonic() + 0.3), pytest.raises(httpx.TimeoutException):
        attempt()
    assert 0.25 <= time.monotonic() - started < 0.8


def test_worker_threads_are_reused(clock: FakeClock) -> None:
    def attempt_threads() -> int:
        return sum(t.name == "opero-attempt" for t in threading.enumerate())

    before = attempt_threads()
    used = {call_within(threading.get_ident, (), {}, 1.0) for _ in range(20)}
    # Twenty calls one after another: the idle threads of earlier tests, or one new one.
    assert len(used) <= before + 1
    assert attempt_threads() <= before + 1


# -- the bound on abandoned attempts ----------------------------------------------------


def test_bound_reached_warns_once_and_the_next_attempt_waits_no_longer_than_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = TimeoutRunner(bound=2, name="fetch")
    release = threading.Event()
    started: list[int] = []

    def stuck(n: int) -> None:
        started.append(n)
        release.wait(HANG)

    try:
        with caplog.at_level(logging.WARNING, logger="opero"):
            for n in range(2):
                with pytest.raises(TimeoutError, match="timed out"):
                    runner.call_within(stuck, (n,), {}, 0.05)
            assert runner.abandoned == 2
            began = time.monotonic()
            with pytest.raises(TimeoutError, match="not started: 2 abandoned attempts of fetch"):
                runner.call_within(stuck, (99,), {}, 0.1)
            assert 0.09 <= time.monotonic() - began < 0.6
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "2 abandoned attempts of fetch" in warnings[0].getMessage()
        assert started == [0, 1]  # the third never ran
    finally:
        release.set()
    deadline = time.monotonic() + HANG
    while runner.abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.abandoned == 0
    assert runner.call_within(started.append, (7,), {}, 0.5) is None
    assert started[-1] == 7


def test_a_waiting_attempt_starts_as_soon_as_an_abandoned_one_ends() -> None:
    runner = TimeoutRunner(bound=1)
    release = threading.Event()
    with pytest.raises(TimeoutError):
        runner.call_within(release.wait, (HANG,), {}, 0.05)
    threading.Timer(0.1, release.set).start()
    began = time.monotonic()
    assert runner.call_within(lambda: "ran", (), {}, 0.8) == "ran"
    assert 0.05 <= time.monotonic() - began < 0.7


def test_runner_settings_are_validated_and_pickle_as_settings() -> None:
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ConfigurationError, match="bound must be an int >= 1"):
            TimeoutRunner(bound=bad)  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(TimeoutRunner(bound=3, name="f")))
    assert (copy.bound, copy.abandoned) == (3, 0)
    assert TimeoutRunner().bound == 8


def test_each_function_has_its_own_runner() -> None:
    def one() -> None: ...

    def two() -> None: ...

    class Client:
        def get(self) -> None: ...

    client = Client()
    assert runner_for(one) is runner_for(one)
    assert runner_for(one) is not runner_for(two)
    assert runner_for(client.get) is runner_for(client.get) is runner_for(Client.get)


@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_no_abandoned_attempts_and_threads_of_its_own() -> None:
    runner = TimeoutRunner(bound=1)
    release = threading.Event()
    with pytest.raises(TimeoutError):
        runner.call_within(release.wait, (HANG,), {}, 0.05)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            if runner.abandoned == 0 and runner.call_within(lambda: 5, (), {}, 0.5) == 5:
                code = 0
        finally:
            os._exit(code)
    release.set()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_abandoned_attempt_does_not_hold_up_interpreter_exit() -> None:
    code = (
        "import threading\n"
        "from opero.core.timeouts import call_within\n"
        "try:\n"
        "    call_within(threading.Event().wait, (60,), {}, 0.05)\n"
        "except TimeoutError:\n"
        "    print('abandoned')\n"
    )
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "abandoned"
    assert time.monotonic() - began < 10  # not the attempt's 60 s


def test_any_awaitable_is_cut_not_only_coroutines(clock: FakeClock) -> None:
    async def main() -> None:
        never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with pytest.raises(TimeoutError):
            await acall_within(lambda: never, (), {}, 0.2)
        assert never.cancelled()
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done.set_result(5)
        assert await acall_within(lambda: done, (), {}, 1.0) == 5

    asyncio.run(main())
    # Blocked for real, not on the fake clock: cut after 0.2 s of real time, and
    # virtual time then reads the attempt's end.
    assert clock.now() == 1000.2


def test_an_attempt_that_suspends_many_times_gets_what_it_awaited(clock: FakeClock) -> None:
    async def attempt() -> list[object]:
        got: list[object] = []
        for n in range(3):
            await asyncio.sleep(0)
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(future.set_result, n)
            got.append(await future)
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            got.append("cut")
            raise
        return got

    async def main() -> None:
        with pytest.raises(TimeoutError) as info:
            await acall_within(attempt, (), {}, 0.05)
        assert isinstance(info.value.__cause__, asyncio.CancelledError)

    asyncio.run(main())


# -- through @opero(attempt_timeout=) ----------------------------------------------------


def test_opero_attempt_timeout_sync_against_a_hanging_server(hanging_url: str) -> None:
    @opero(retries=1, attempt_timeout=0.2, min_delay=0.01, max_delay=0.01)
    def fetch() -> int:
        with urllib.request.urlopen(hanging_url) as response:
            return int(response.status)

    began = time.monotonic()
    with pytest.raises(AllFailedError) as info:
        fetch()
    assert 0.4 <= time.monotonic() - began < 1.0
    assert [type(e) for e in info.value.errors] == [TimeoutError, TimeoutError]


def test_opero_attempt_timeout_async_against_a_hanging_server(hanging_url: str) -> None:
    @opero(retries=1, attempt_timeout=0.2, min_delay=0.01, max_delay=0.01)
    async def fetch() -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(hanging_url, timeout=30)).status_code

    began = time.monotonic()
    with pytest.raises(AllFailedError) as info:
        asyncio.run(fetch())
    assert 0.4 <= time.monotonic() - began < 1.0
    assert [type(e) for e in info.value.errors] == [TimeoutError, TimeoutError]


def test_opero_attempt_timeout_cuts_at_exactly_the_timeout_on_the_fake_clock(
    clock: FakeClock,
) -> None:
    starts: list[float] = []

    @opero(retries=2, attempt_timeout=1.0, min_delay=0.5, backoff_factor=1, jitter=False)
    async def slow() -> None:
        starts.append(clock.now())
        await clock.async_sleep(30)

    @opero(retries=2, attempt_timeout=1.0, min_delay=0.5, backoff_factor=1, jitter=False)
    def sync_slow() -> None:
        starts.append(clock.now())
        clock.sleep(30)

    with pytest.raises(AllFailedError):
        asyncio.run(slow())
    assert starts == [1000.0, 1001.5, 1003.0]
    assert clock.now() == 1004.0
    starts.clear()
    with pytest.raises(AllFailedError):
        sync_slow()
    assert starts == [1004.0, 1005.5, 1007.0]
    assert clock.now() == 1008.0
