"""A deliberately unreliable HTTP service on 127.0.0.1, and a small client, for ``opero demo``.

The tour needs failures to recover from, and it must run on a fresh machine
with no network and no services, so it brings its own: a stdlib
``ThreadingHTTPServer`` on a random local port, in a daemon thread.

Every failure is planned from a seed, never drawn at request time, so two
tours with one seed meet the same failures however their threads interleave:

* ``GET /items/<n>``: item ``n`` is ``ok``, ``slow`` (answers late), ``flaky``
  (its first one or two requests get 503), ``broken`` (always 503), ``missing``
  (404) or ``hanging`` (never answers in time); see ``FlakyService.plan``.
* ``GET /flaky/<k>/<name>``: the first ``k`` requests of this path get 503.
* ``GET /slow/<ms>/<name>``: 200 after ``ms`` milliseconds.
* ``GET /ok/<name>`` and ``GET /ping``: 200 at once (``/ping`` arrivals are timed).
* Any request whose ``X-Api-Key`` header holds a revoked key gets 401.

Keys are compared and never stored in logs: the handler's request log is off.
The client (``get`` with ``http.client``, ``aget`` with raw HTTP/1.0 over
``asyncio.open_connection``) turns error statuses into exceptions that name the
path and status, never a header, so a key cannot leak through error text.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple, final

__all__ = [
    "TRANSIENT",
    "FlakyService",
    "HTTPStatusError",
    "ItemPlan",
    "NotFoundError",
    "ServiceUnavailableError",
    "UnauthorizedError",
    "aget",
    "get",
]

#: Shares of items by kind, in the order they are drawn; the rest are ``ok``.
_KIND_SHARES = (
    ("missing", 0.03),
    ("broken", 0.03),
    ("hanging", 0.02),
    ("flaky", 0.15),
    ("slow", 0.15),
)


class ItemPlan(NamedTuple):
    """What ``/items/<n>`` does, fixed by the seed."""

    #: ``ok``, ``slow``, ``flaky``, ``broken``, ``missing`` or ``hanging``.
    kind: str
    #: How many first requests answer 503 (flaky: 1 or 2; broken: all).
    failures: int
    #: Seconds before answering.
    delay: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Linux drops connections beyond the backlog silently and the client retries the
    # SYN a second later; a map with dozens in flight must never meet that.
    request_queue_size = 128
    service: FlakyService

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that timed out closes its socket under a sleeping handler: expected
        # here, and a traceback on stderr would look like the tour itself had failed.
        return


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return  # the tour prints its own account; a request log would bury it

    def do_GET(self) -> None:
        status, delay = self.server.service.decide(self.path, self.headers.get("X-Api-Key"))
        if delay and self.server.service.stopping.wait(delay):
            return  # shutting down: drop the request rather than keep the process alive
        body = json.dumps({"path": self.path, "status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@final
class FlakyService:
    """The service, started by ``with FlakyService(...) as service:`` and stopped after.

    Args:
        seed: Fixes every planned failure and delay.
        revoked_keys: API keys answered with 401.
        slow: Range of delays of ``slow`` items, in seconds.
        hang: Seconds a ``hanging`` item takes: longer than any client waits.
    """

    def __init__(
        self,
        *,
        seed: int,
        revoked_keys: Collection[str] = (),
        slow: tuple[float, float] = (0.05, 0.2),
        hang: float = 5.0,
    ) -> None:
        self.seed = seed
        self.slow = slow
        self.hang = hang
        self._revoked = frozenset(revoked_keys)
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        #: Answers given, by status code (``"hang"`` for a request left unanswered in time).
        self.answers: Counter[int | str] = Counter()
        #: ``time.monotonic()`` of each ``/ping`` arrival.
        self.pings: list[float] = []
        #: Set on close: wakes handlers that are sleeping on a slow or hanging answer.
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FlakyService:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.service = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the service listens on."""
        if self._server is None:
            msg = "the service is not running; use it in a with block"
            raise RuntimeError(msg)
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.address
        return f"http://{host}:{port}"

    def plan(self, n: int) -> ItemPlan:
        """What ``/items/<n>`` does: a pure function of the seed and ``n``."""
        # A string seed hashes the same in every process (unlike hash(tuple)).
        rng = random.Random(f"{self.seed}:item:{n}")
        draw, fast = rng.random(), rng.uniform(0.0, 0.01)
        kind = "ok"
        for name, share in _KIND_SHARES:
            if draw < share:
                kind = name
                break
            draw -= share
        if kind == "ok":
            return ItemPlan(kind, 0, fast)
        if kind == "slow":
            return ItemPlan(kind, 0, rng.uniform(*self.slow))
        if kind == "hanging":
            return ItemPlan(kind, 0, self.hang)
        failures = {"flaky": rng.randint(1, 2), "broken": 1 << 30}.get(kind, 0)
        return ItemPlan(kind, failures, fast)

    def reset(self) -> None:
        """Forget how often each path was asked, so flaky items fail again from the start."""
        with self._lock:
            self._seen.clear()

    def count(self, prefix: str) -> int:
        """Requests received for paths starting with ``prefix`` (since the last reset)."""
        with self._lock:
            return sum(n for path, n in self._seen.items() if path.startswith(prefix))

    def decide(self, path: str, api_key: str | None) -> tuple[int, float]:
        """The status and delay of one request (called by the handler, under no I/O)."""
        with self._lock:
            self._seen[path] += 1
            seen = self._seen[path]
        status, delay = self._route(path, seen, api_key)
        with self._lock:
            self.answers["hang" if delay >= self.hang else status] += 1
        return status, delay

    def _route(self, path: str, seen: int, api_key: str | None) -> tuple[int, float]:
        if api_key is not None and api_key in self._revoked:
            return 401, 0.0
        parts = path.strip("/").split("/")
        try:
            if parts[0] == "items" and len(parts) == 2:
                plan = self.plan(int(parts[1]))
                if plan.kind == "missing":
                    return 404, plan.delay
                return (503 if seen <= plan.failures else 200), plan.delay
            if parts[0] == "flaky" and len(parts) == 3:
                return (503 if seen <= int(parts[1]) else 200), 0.0
            if parts[0] == "slow" and len(parts) == 3:
                return 200, int(parts[1]) / 1000
        except ValueError:
            return 404, 0.0
        if parts[0] == "ok" and len(parts) == 2:
            return 200, 0.0
        if parts == ["ping"]:
            with self._lock:
                self.pings.append(time.monotonic())
            return 200, 0.0
        return 404, 0.0


class HTTPStatusError(Exception):
    """An answer other than 200.  The message names the path, never a header (keys!)."""

    def __init__(self, status: int, path: str) -> None:
        super().__init__(f"HTTP {status} from {path}")
        self.status = status


class UnauthorizedError(HTTPStatusError):
    """401: the API key was refused; another key may work."""


class NotFoundError(HTTPStatusError):
    """404: asking again will not help, so it is not retried."""


class ServiceUnavailableError(HTTPStatusError):
    """503: the service is struggling; a later attempt may succeed."""


#: Errors worth another attempt.
TRANSIENT = (ServiceUnavailableError, TimeoutError, ConnectionError)


def _check(status: int, body: bytes, path: str) -> bytes:
    if status == 200:
        return body
    kind = {401: UnauthorizedError, 404: NotFoundError, 503: ServiceUnavailableError}.get(status)
    raise (kind or HTTPStatusError)(status, path)


def get(address: tuple[str, int], path: str, *, timeout: float, api_key: str = "") -> bytes:
    """``GET path`` with the stdlib client; an error status raises its ``HTTPStatusError``."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("GET", path, headers={"X-Api-Key": api_key} if api_key else {})
        response = connection.getresponse()
        return _check(response.status, response.read(), path)
    except TimeoutError:
        raise TimeoutError(f"no answer from {path} within {timeout:g} s") from None
    finally:
        connection.close()


async def aget(address: tuple[str, int], path: str, *, timeout: float) -> bytes:
    """``GET path`` as HTTP/1.0 over ``asyncio.open_connection``: no thread, no dependency."""

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {address[0]}\r\n\r\n".encode())
            await writer.drain()
            return await reader.read()  # HTTP/1.0: the server closes after the answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        raw = await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
        raise TimeoutError(f"no answer from {path} within {timeout:g} s") from None
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2:
        raise ConnectionResetError(f"no HTTP answer from {path}")
    return _check(int(status_line[1]), body, path)
