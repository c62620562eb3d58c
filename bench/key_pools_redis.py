"""Key pools across processes (issue 14): two processes, one redis, one breaker.

Run:  python bench/key_pools_redis.py              (needs: pip install -e ".[bench]")
      python bench/key_pools_redis.py across       (only those: across, overhead)

It uses the redis-server on 127.0.0.1:6379 when one answers (its own key names, deleted
after; never flushed), else starts one of its own on a free port and stops it after.

* across: two real processes (``multiprocessing``, spawn) each decorate the same function,
  ``@opero(arg_fallback="key", candidate_breaker=Breaker(...), breaker_backend="redis")``
  with a fresh ``rate_limit_scope`` each round.  B calls every 2 ms and always succeeds;
  A starts 0.1 s later, calls as fast as it can, and every call it makes to candidate 0
  fails (``ConnectionError``, routed by the default ``fallback_on``), so A's failures open
  candidate 0.  The open's instant is A's INFO log line ``candidate 0 breaker closed ->
  open`` (``time.monotonic()``, which every process on one host shares); the open itself
  happened in redis between the start of A's last failing call and that line, so each
  round also shows the lag after that start, the stricter of the two.  Per round: how
  long after the open B's last call to candidate 0 started (negative: before it).
  Target: none later than 50 ms after the open (by either measure), in any round.
* overhead: the success path of 3 healthy keys with ``candidate_breaker=True`` kept in
  memory and in redis (sync, best of many rounds taking turns, as ``bench/overhead.py``).

Targets are checked and printed as PASS/FAIL (exit code 1 if one is missed).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import redis
from measure import Checks

from opero import Breaker, opero

HOST = "127.0.0.1"
ROUNDS = 10
RUN = 0.4  # seconds of B's calls per round; A starts 0.1 s in
TARGET = 0.05
PREFIX = f"bench-kpr-{uuid.uuid4().hex[:12]}"
BREAKER = Breaker(
    failure_threshold=None, failure_ratio=0.5, window_calls=10, minimum_calls=5, cooldown=30
)


def decorated(role: str, scope: str, config: dict[str, Any], calls: list[Any]) -> Any:
    """One process's view of the shared function: it notes each call's start and key."""

    @opero(
        retries=0,
        arg_fallback="key",
        rate_limit_scope=scope,
        candidate_breaker=BREAKER,
        breaker_backend="redis",
        breaker_backend_config=config,
    )
    def call(key: tuple[str, ...] = ("k0", "k1", "k2")) -> str:
        index = int(key[0][1])
        calls.append((time.monotonic(), index))
        if role == "A" and index == 0:
            raise ConnectionError("A cannot use candidate 0")
        return key[0]

    return call


class Opened(logging.Handler):
    """Notes the instant opero logs that candidate 0 opened."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "candidate 0 breaker closed -> open" in record.getMessage():
            self.at.append(time.monotonic())


def worker(role: str, config: dict[str, Any], pipe: Connection) -> None:
    """One process: for each round the parent sends (scope, go), run it, send the calls."""
    opened = Opened()
    logging.getLogger("opero").addHandler(opened)
    logging.getLogger("opero").setLevel(logging.INFO)
    pipe.send("ready")
    while (order := pipe.recv()) is not None:
        scope, go = order
        calls: list[tuple[float, int]] = []
        call = decorated(role, scope, config, calls)
        if role == "B":
            call()  # connect before the round starts
        calls.clear()
        opened.at.clear()
        pipe.send("set")
        begin = go + (0.1 if role == "A" else 0.0)
        while time.monotonic() < begin:
            time.sleep(0.001)
        while time.monotonic() < go + RUN:
            call()
            if role == "B":
                time.sleep(0.002)
            elif opened.at and time.monotonic() > opened.at[0] + 0.1:
                break  # A's part is done; it calls the others from now on
        pipe.send({"calls": calls, "opened": list(opened.at)})


def one_round(pipes: dict[str, Connection], scope: str) -> dict[str, Any]:
    go = time.monotonic() + 0.05
    for pipe in pipes.values():
        pipe.send((scope, go))
    for pipe in pipes.values():
        assert pipe.recv() == "set"
    a, b = (pipes[role].recv() for role in ("A", "B"))
    a_fail = [at for at, index in a["calls"] if index == 0]
    opened = a["opened"][0] if a["opened"] else (a_fail[-1] if a_fail else float("nan"))
    b_zero = [at for at, index in b["calls"] if index == 0]
    last = max(b_zero) if b_zero else float("-inf")
    return {
        "lag": last - opened,
        "lag_fail": last - (a_fail[-1] if a_fail else float("nan")),
        "logged": bool(a["opened"]),
        "b_opened": bool(b["opened"]),
        "b_zero_after": sum(1 for at in b_zero if at > opened),
        "b_zero": len(b_zero),
        "b_other": sum(1 for _, index in b["calls"] if index != 0),
        "a_fail": len(a_fail),
    }


def report_across(check: Checks, config: dict[str, Any]) -> None:
    print(f"across processes: {ROUNDS} rounds, B every 2 ms, A's calls to candidate 0 fail")
    print(
        "  round   B's last call to 0 after: the open   A's last failure   B calls to 0 / after"
        " the open / to others   A's failures"
    )
    ctx = mp.get_context("spawn")
    pipes: dict[str, Connection] = {}
    processes = []
    for role in ("A", "B"):
        here, there = ctx.Pipe()
        process = ctx.Process(target=worker, args=(role, config, there), daemon=True)
        process.start()
        processes.append(process)
        pipes[role] = here
    try:
        for pipe in pipes.values():
            assert pipe.recv() == "ready"
        rows = []
        for n in range(ROUNDS):
            row = one_round(pipes, f"{PREFIX}-{n}")
            rows.append(row)
            print(
                f"  {n:5d}  {row['lag'] * 1e3:+30.2f} ms {row['lag_fail'] * 1e3:+15.2f} ms"
                f"   {row['b_zero']:12d} / {row['b_zero_after']:14d} / {row['b_other']:9d}"
                f"   {row['a_fail']:12d}"
            )
    finally:
        for pipe in pipes.values():
            pipe.send(None)
        for process in processes:
            process.join(timeout=10)
    worst = max(row["lag"] for row in rows)
    bound = max(row["lag_fail"] for row in rows)
    print(
        f"  worst over {ROUNDS} rounds: {worst * 1e3:+.2f} ms after the open "
        f"({bound * 1e3:+.2f} ms after the start of A's last failing call, which opened it)"
    )
    check("every round's open is A's INFO log line", all(row["logged"] for row in rows))
    check("B never opened it itself (only A's failures did)", not any(r["b_opened"] for r in rows))
    check(
        f"no B call to candidate 0 starts > 50 ms after the open ({worst * 1e3:+.2f} ms; "
        f"{bound * 1e3:+.2f} ms after A's last failure)",
        max(worst, bound) <= TARGET,
    )


def report_overhead(check: Checks, config: dict[str, Any]) -> None:
    import overhead  # noqa: PLC0415 (here: spawned workers need none of its peers)

    def plain(x: int, key: list[str] = ["k0", "k1", "k2"]) -> int:  # noqa: B006
        return x

    memory = opero(arg_fallback="key", candidate_breaker=True)(plain)
    shared = opero(
        arg_fallback="key",
        candidate_breaker=True,
        rate_limit_scope=f"{PREFIX}-overhead",
        breaker_backend="redis",
        breaker_backend_config=config,
    )(plain)
    shared(1)  # connect
    times = overhead.per_call_table(
        {
            "plain call": (lambda: plain(1), 200_000),
            "candidate_breaker=True, memory": (lambda: memory(1), 200_000),
            'candidate_breaker=True, breaker_backend="redis"': (lambda: shared(1), 4_000),
        }
    )
    print("\nsync success path, 3 healthy keys               per call   over plain")
    for name, t in times.items():
        print(f"  {name:46s} {t * 1e6:8.2f} µs {(t - times['plain call']) * 1e6:8.2f} µs")
    ratio = (
        times['candidate_breaker=True, breaker_backend="redis"']
        / times["candidate_breaker=True, memory"]
    )
    print(f"  redis / memory: x{ratio:.0f} (two round trips to redis a call)")


class OwnServer:
    """A redis-server of this script's own on a free port (when none answers on 6379)."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("no redis-server answers on 127.0.0.1:6379 and none is installed")
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = int(sock.getsockname()[1])
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", HOST, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the redis-server of this benchmark did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def answers(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def forget(port: int) -> int:
    """Delete this run's keys (every name holds PREFIX); return how many."""
    client = redis.Redis(host=HOST, port=port)
    try:
        keys = list(client.scan_iter(match=f"*{PREFIX}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


SECTIONS: dict[str, Callable[[Checks, dict[str, Any]], None]] = {
    "across": report_across,
    "overhead": report_overhead,
}


def main(only: list[str]) -> int:
    unknown = set(only) - set(SECTIONS)
    if unknown:
        print(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    own = None if answers(6379) else OwnServer()
    port = 6379 if own is None else own.port
    where = "the shared one" if own is None else "its own"
    print(f"python {sys.version.split()[0]}; redis-server on {HOST}:{port} ({where})\n")
    config = {"host": HOST, "port": port, "socket_connect_timeout": 0.5}
    check = Checks()
    try:
        for name, report in SECTIONS.items():
            if not only or name in only:
                report(check, config)
    finally:
        print(f"\n(deleted {forget(port)} keys of this run)")
        if own is not None:
            own.stop()
    print("\nall targets met" if check.ok else "\nsome targets missed")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
