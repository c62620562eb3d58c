"""A flaky upstream on 127.0.0.1 for tests and docs: refusals, Retry-After, hangs and API keys.

Real clients (requests, httpx, aiohttp) talk to it over real sockets, so the
errors a test sees are the ones those libraries raise.  Routes (query values
are optional):

* ``/status/<code>?retry_after=<value>&retry_after_in=<s>``: answers ``code``;
  ``retry_after`` is sent as the ``Retry-After`` header as given (seconds, or
  any text), ``retry_after_in`` as an HTTP-date that many seconds from now
  (by ``time.time()``); ``reset_after`` is sent as ``X-RateLimit-Reset-After``
  (a non-standard header, for a ``retry_after=`` callable to read).
* ``/flaky?fail=<n>&status=<code>&retry_after=<value>&hang=<s>&key=<name>``:
  the first ``n`` requests of each ``key`` (default: the whole query) answer
  ``code`` (default 503), after hanging ``hang`` seconds if given; then 200.
* ``/hang?seconds=<s>``: answers 200 after ``s`` seconds (default 30), or as
  soon as the server shuts down, so a test never waits for it to finish.
* ``/keys/<key>`` and ``/private`` (the key in ``Authorization: Bearer <key>``):
  401 unless the key is one of ``valid_keys``; then 200 with
  ``{"authorized": true}`` (never the key itself).
* anything else: 200 with ``{"path": ...}``.

Every answer is JSON.  ``hits(route)`` counts requests per route (the path
without its query), for tests that check how many calls the server saw.
Usable standalone (``with HTTPStub() as stub: stub.url("/status/429")``) or
mounted under a host of another server through :func:`answer`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["HTTPStub", "Upstream", "answer"]

#: The longest a ``/hang`` request holds its connection.
_LONGEST_HANG = 30.0


class Upstream:
    """The stub's state: which keys are valid, per-key failure counts, hits per route."""

    def __init__(self, valid_keys: Sequence[str] = ("good-key", "spare-key")) -> None:
        self.valid_keys = tuple(valid_keys)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._failed: Counter[str] = Counter()
        self._hits: Counter[str] = Counter()

    def hits(self, route: str) -> int:
        """Requests seen for ``route`` (``"/flaky"``, ``"/status/429"``, ...)."""
        with self.lock:
            return self._hits[route]

    def reset(self) -> None:
        """Forget failure counts and hits (valid keys stay)."""
        with self.lock:
            self._failed.clear()
            self._hits.clear()

    def decide(self, target: str, headers: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Status, extra headers and JSON body for a request of ``target`` (path and query)."""
        parts = urlsplit(target)
        path, query = parts.path or "/", {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self._hits[path] += 1
        extra = _retry_after(query)
        if path.startswith("/status/") and path[8:].isdigit():
            code = int(path[8:])
            return code, extra, {"status": code}
        if path == "/flaky":
            return self._flaky(query, parts.query, extra)
        if path == "/hang":
            seconds = min(float(query.get("seconds", _LONGEST_HANG)), _LONGEST_HANG)
            self.stopping.wait(seconds)
            return 200, {}, {"slept": seconds}
        if path.startswith("/keys/") or path == "/private":
            auth = str(headers.get("Authorization") or "")
            key = path[6:] if path.startswith("/keys/") else auth.removeprefix("Bearer ")
            if key not in self.valid_keys:
                return 401, {}, {"error": "invalid key"}
            return 200, {}, {"authorized": True}
        return 200, {}, {"path": path}

    def _flaky(
        self, query: dict[str, str], raw: str, extra: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        key = query.get("key", raw)
        with self.lock:
            failed = self._failed[key]
            failing = failed < int(query.get("fail", "1"))
            if failing:
                self._failed[key] += 1
        if not failing:
            return 200, {}, {"status": 200, "after_failures": failed}
        if "hang" in query:
            self.stopping.wait(min(float(query["hang"]), _LONGEST_HANG))
        code = int(query.get("status", "503"))
        return code, extra, {"status": code, "failure": failed + 1}


def _retry_after(query: dict[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    if "retry_after" in query:
        headers["Retry-After"] = query["retry_after"]
    elif "retry_after_in" in query:
        moment = time.time() + float(query["retry_after_in"])
        headers["Retry-After"] = formatdate(moment, usegmt=True)
    if "reset_after" in query:
        headers["X-RateLimit-Reset-After"] = query["reset_after"]
    return headers


def answer(handler: BaseHTTPRequestHandler, upstream: Upstream, target: str) -> None:
    """Answer ``handler``'s request as the upstream would answer ``target``."""
    status, extra, body = upstream.decide(target, handler.headers)
    data = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:  # the client gave up (a timeout test): nothing to answer
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet, and never a key in a log."""

    def do_GET(self) -> None:
        answer(self, self.server.upstream, self.path)

    do_POST = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream: Upstream


class HTTPStub:
    """The upstream on an ephemeral port of 127.0.0.1, served from a daemon thread."""

    def __init__(self, upstream: Upstream | None = None) -> None:
        self.upstream = upstream or Upstream()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = self.upstream
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, target: str) -> str:
        """The full URL of ``target`` (``"/status/429?retry_after=2"``)."""
        return self.base_url + target

    def hits(self, route: str) -> int:
        """Requests seen for ``route``."""
        return self.upstream.hits(route)

    def __enter__(self) -> HTTPStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.upstream.stopping.set()  # hanging requests answer now
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
