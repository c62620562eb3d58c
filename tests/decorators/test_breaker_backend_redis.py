"""``breaker_backend="redis"`` through the decorators: settings, two real processes, outages.

Every test here runs on a redis-server of its own (a free port), so one may stop and
restart it without touching the shared server; times are real (no test sleeps a second).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from opero import Breaker, CircuitOpenError, ConfigurationError, opero, opmap
from opero.utils.introspection import get_opero_info
from redis_server import redis_answers

HOST = "127.0.0.1"


class Server:
    """One redis-server on a free port, stopped and started on that same port."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed")
        self.executable = executable
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> dict[str, Any]:
        return {"host": HOST, "port": self.port, "socket_connect_timeout": 0.5}

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", HOST, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_answers(HOST, self.port):
            assert self.process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def server() -> Iterator[Server]:
    own = Server()
    own.start()
    try:
        yield own
    finally:
        own.stop()


def unique() -> str:
    return f"test-{uuid.uuid4().hex}"


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"breaker_backend": "disk"}, "breaker_backend must be one of 'memory', 'redis'"),
        ({"breaker_backend_config": {"host": HOST}}, "breaker_backend_config is the redis"),
        ({"breaker_backend": "redis"}, "breaker_backend='redis' needs breaker_backend_config"),
        (
            {"breaker_backend": "redis", "breaker_backend_config": {"hots": HOST}},
            "breaker_backend_config got unknown keys 'hots'",
        ),
        (
            {"breaker_backend": "redis", "rate_limit_backend_config": {"url": "http://x"}},
            r"rate_limit_backend_config\['url'\] must be a str starting with",
        ),
        ({"breaker_backend": "redis", "breaker_backend_config": [HOST]}, "must be a dict"),
    ],
)
def test_bad_settings_fail_at_decoration_naming_the_parameter(
    settings: dict[str, Any], named: str
) -> None:
    full = {"arg_fallback": "key", "candidate_breaker": True, **settings}
    with pytest.raises(ConfigurationError, match=named):
        opero(**full)
    with pytest.raises(ConfigurationError, match=named):
        opmap(**full)


def test_redis_without_a_pool_or_a_circuit_breaker_is_a_mistake() -> None:
    with pytest.raises(ConfigurationError, match="breaker_backend='redis' shares key pools"):
        opero(breaker_backend="redis", breaker_backend_config={"host": HOST})


def test_it_defaults_to_the_rate_limit_connection(server: Server) -> None:
    @opero(
        arg_fallback="key",
        candidate_breaker=Breaker(failure_threshold=1, cooldown=30),
        retries=0,
        rate_limit_scope=unique(),
        breaker_backend="redis",
        rate_limit_backend_config=server.config,
    )
    def call(key: list[str] = ["a", "b"]) -> str:  # noqa: B006
        if key[0] == "a":
            raise ConnectionError("a is down")
        return key[0]

    assert call() == "b"
    assert call.__opero__.pool is not None
    assert not call.__opero__.pool.local
    stored = redis.Redis(host=HOST, port=server.port)
    assert [k.decode() for k in stored.keys("opero:breaker:test-*:0")] != []
    assert stored.hget(stored.keys("opero:breaker:test-*:0")[0], "s") == b"open"
    stored.close()


# --- two processes, one redis --------------------------------------------------------------

#: One process of the two: ``B`` calls candidate 0 successfully every 5 ms; ``A`` starts
#: 0.3 s later and calls as fast as it can, every call to candidate 0 failing, so A's
#: failures soon make half of the last 10 calls and open it.  Both start when the test says
#: go (once both are ready); each writes the time of every call (by candidate) and of the
#: open it logged.
WORKER = """
import json, logging, os, sys, time
from opero import Breaker, opero

role, scope, port, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
opened = []

class Opened(logging.Handler):
    def emit(self, record):
        if "candidate 0 breaker closed -> open" in record.getMessage():
            opened.append(time.time())

logging.getLogger("opero").addHandler(Opened())
logging.getLogger("opero").setLevel(logging.INFO)
calls = []

@opero(
    retries=0, arg_fallback="key", rate_limit_scope=scope,
    candidate_breaker=Breaker(
        failure_threshold=None, failure_ratio=0.5, window_calls=10, minimum_calls=5, cooldown=30
    ),
    breaker_backend="redis", breaker_backend_config={"host": "127.0.0.1", "port": port},
)
def call(key=("k0", "k1")):
    calls.append((time.time(), int(key[0][1])))
    if role == "A" and key[0] == "k0":
        raise ConnectionError("A cannot use candidate 0")
    return key[0]

if role == "B":
    call()  # connect before the run starts (A's first call is a failure: it waits)
calls.clear()
open(out + ".ready", "w").close()
while not os.path.exists(out + ".go"):
    time.sleep(0.005)
start_at = float(open(out + ".go").read())
begin = start_at + (0.3 if role == "A" else 0.0)
while time.time() < begin:
    time.sleep(0.001)
while time.time() < start_at + 0.8:
    call()
    if role == "B":
        time.sleep(0.005)
json.dump({"calls": calls, "opened": opened}, open(out, "w"))
"""


def test_once_one_process_opens_a_candidate_the_other_stops_calling_it(
    server: Server, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    scope = unique()
    runs = {
        role: subprocess.Popen(
            [sys.executable, str(script), role, scope, str(server.port), str(tmp_path / role)]
        )
        for role in ("A", "B")
    }
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"{role}.ready").exists() for role in runs):
        assert time.monotonic() < deadline
        assert all(p.poll() is None for p in runs.values())
        time.sleep(0.01)
    go = repr(time.time() + 0.05)
    for role in runs:
        # Written aside and renamed into place: a worker that sees the file sees its time
        # (written in place, a worker on a busy machine read it empty once).
        (tmp_path / f"{role}.go.tmp").write_text(go)
        (tmp_path / f"{role}.go.tmp").replace(tmp_path / f"{role}.go")
    for process in runs.values():
        assert process.wait(timeout=30) == 0
    a, b = (json.loads((tmp_path / role).read_text()) for role in ("A", "B"))
    assert len(a["opened"]) == 1, a["opened"]
    assert b["opened"] == []  # B never failed: only A's failures opened it
    opened = a["opened"][0]
    b_zero = [at for at, index in b["calls"] if index == 0]
    assert any(at < opened - 0.1 for at in b_zero)  # B was calling it before
    lag = max(b_zero) - opened
    print(f"B's last call to candidate 0 started {lag * 1000:.2f} ms after A's open")
    assert lag <= 0.05
    assert sum(1 for _, index in b["calls"] if index == 1) > 10  # B moved on to candidate 1


# --- outages -------------------------------------------------------------------------------


def test_an_outage_goes_on_locally_warns_once_opens_nothing_and_recovers(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opero")
    starts: list[float] = []

    @opero(
        retries=0,
        arg_fallback="key",
        candidate_breaker=Breaker(failure_threshold=1, cooldown=30),
        candidate_rate_limit=50,
        rate_limit_scope=unique(),
        breaker_backend="redis",
        breaker_backend_config=server.config,
    )
    def call(i: int, key: list[str] = ["only"]) -> int:  # noqa: B006
        starts.append(time.monotonic())
        return i

    assert [call(i) for i in range(3)] == [0, 1, 2]
    server.stop()
    starts.clear()
    assert [call(i) for i in range(8)] == list(range(8))  # calls go on
    assert all(s.state == "closed" for s in call.statistics().candidates)  # none opened
    # never unlimited: the local budget (50/s) still spaces the starts (a late wake-up can
    # bring two starts closer, never the whole run: 8 starts take 7 intervals at least)
    assert starts[-1] - starts[0] >= 7 * 0.02 - 0.005, starts
    server.start()  # empty
    time.sleep(0.6)  # the first cool-down passes
    assert call(9) == 9
    stored = redis.Redis(host=HOST, port=server.port)
    assert stored.keys("opero:breaker:test-*:0") != []  # redis keeps the state again
    stored.close()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    warnings = [m for level, m in messages if level == logging.WARNING]
    assert len(warnings) == 1
    assert "unavailable (ConnectionError)" in warnings[0]
    assert not any("-> open" in m for _, m in messages)
    assert sum("restored" in m for _, m in messages) == 1
    assert str(server.port) not in warnings[0]  # where the server is is not logged


def test_an_unreachable_server_at_the_first_call_still_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])  # nothing listens there
    starts: list[float] = []

    @opero(
        arg_fallback="key",
        candidate_rate_limit=100,
        breaker_backend="redis",
        breaker_backend_config={"host": HOST, "port": port},
    )
    def call(key: list[str] = ["only"]) -> None:  # noqa: B006
        starts.append(time.monotonic())

    with caplog.at_level(logging.WARNING, logger="opero"):
        for _ in range(5):
            call()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert starts[-1] - starts[0] >= 4 * 0.01 - 0.005


# --- the function's own breaker, async, maps -----------------------------------------------


def shared_circuit(config: dict[str, Any]) -> Any:
    """A fresh decoration of one function (one qualname): each is another process's view."""

    @opero(
        retries=0,
        circuit_breaker=Breaker(failure_threshold=2, cooldown=30),
        breaker_backend="redis",
        breaker_backend_config=config,
    )
    def fetch(fail: bool) -> str:
        if fail:
            raise ConnectionError("down")
        return "ok"

    return fetch


def test_circuit_breaker_is_shared_by_every_holder_of_the_function(server: Server) -> None:
    here, there = shared_circuit(server.config), shared_circuit(server.config)
    for _ in range(2):
        with pytest.raises(Exception, match="down"):
            here(True)
    with pytest.raises(CircuitOpenError, match=r"circuit breaker .* is open"):
        there(False)  # opened by the other holder's failures
    assert there.statistics().breaker == "open"


def test_an_async_function_shares_its_candidates(server: Server) -> None:
    scope = unique()

    def make() -> Any:
        @opero(
            retries=0,
            arg_fallback="key",
            candidate_breaker=Breaker(failure_threshold=1, cooldown=30),
            rate_limit_scope=scope,
            breaker_backend="redis",
            breaker_backend_config=server.config,
        )
        async def fetch(key: list[str] = ["a", "b"]) -> str:  # noqa: B006
            if key[0] == "a":
                raise ConnectionError("a is down")
            return key[0]

        return fetch

    first = make()
    assert asyncio.run(first()) == "b"  # a failed once: open, in redis
    tried: list[str] = []

    @opero(
        arg_fallback="key",
        candidate_breaker=Breaker(failure_threshold=1, cooldown=30),
        rate_limit_scope=scope,
        breaker_backend="redis",
        breaker_backend_config=server.config,
    )
    def other(key: list[str] = ["a", "b"]) -> str:  # noqa: B006
        tried.append(key[0])
        return key[0]

    assert other() == "b"
    assert tried == ["b"]


def test_opmap_takes_the_settings(server: Server) -> None:
    @opmap(
        mode="thread",
        workers=2,
        progress=False,
        arg_fallback="key",
        candidate_breaker=True,
        breaker_backend="redis",
        breaker_backend_config=server.config,
    )
    def double(x: int, key: list[str] = ["a"]) -> int:  # noqa: B006
        return 2 * x

    assert list(double(range(4))) == [0, 2, 4, 6]


def test_the_connection_s_credentials_never_show() -> None:
    @opero(
        arg_fallback="key",
        candidate_breaker=True,
        breaker_backend="redis",
        breaker_backend_config={"url": "redis://user:hunter2@127.0.0.1:1/0"},
    )
    def call(key: list[str] = ["a"]) -> str:  # noqa: B006
        return key[0]

    shown = repr(get_opero_info(call))
    assert "hunter2" not in shown
    assert "breaker_backend_config" in shown
