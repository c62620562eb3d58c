"""A local stand-in for the fictional ``https://<name>.example.com`` services the docs call.

Examples in the docs talk to hosts under ``example.com`` (reserved for
documentation, so a reader never hits a real service by accident).  The test
rewrites ``https://<name>.example.com`` to ``http://127.0.0.1:<port>/<name>``
and this server answers; no request leaves the machine.

How each host behaves (the docs rely on it):

* ``api``: ``GET /users/<id>`` and any other path answer 200 with JSON
  ``{"id": <last path segment>, "name": "user <id>", "path": ...}``;
  ``GET /status/<code>`` answers with that status; ``POST`` echoes the JSON body
  with ``"status": "created"``.  ``Authorization: Bearer revoked-key`` gets 401.
* ``flaky``: like ``api``, but the first request for each path answers 503.
* any host whose name contains ``down``: always 503.
* ``upstream``: the flaky upstream of ``tests/http_stub.py`` (429 with
  ``Retry-After``, 503, 401 by key, hangs, fail-N-times), for the HTTP APIs page.
* ``keys``: answers by the API key of each request (``key_pool_stub.py``: revoked
  keys 401, busy keys 429 with ``Retry-After`` every other request), for the Key
  pools page.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from key_pool_stub import KeyedAPI, answer_by_key

from http_stub import Upstream, answer

__all__ = ["StubServer", "rewrite_urls"]

#: ``https://<name>.example.com`` (and ``http://``) in an example's source.
_EXAMPLE_URL = re.compile(r"https?://([a-z0-9-]+)\.example\.com")


def rewrite_urls(source: str, base_url: str) -> str:
    """Point every ``https://<name>.example.com`` in ``source`` at the stub server."""
    return _EXAMPLE_URL.sub(lambda m: f"{base_url}/{m.group(1)}", source)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        host, _, path = self.path.lstrip("/").partition("/")
        if host == "upstream":
            answer(self, self.server.upstream, "/" + path)
            return
        if host == "keys":
            answer_by_key(self, self.server.keyed, "/" + path)
            return
        path = "/" + path.split("?", 1)[0]
        if self.headers.get("Authorization", "") == "Bearer revoked-key":
            self._reply(401, {"error": "key revoked"})
            return
        if "down" in host:
            self._reply(503, {"error": f"{host} is down"})
            return
        if host == "flaky":
            with self.server.lock:
                seen = self.server.seen.get(path, 0)
                self.server.seen[path] = seen + 1
            if seen == 0:
                self._reply(503, {"error": "try again"})
                return
        status = re.fullmatch(r"/status/(\d{3})", path)
        if status:
            code = int(status.group(1))
            self._reply(code, {"status": code})
            return
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            self._reply(201, {**body, "status": "created", "path": path})
            return
        last = path.rstrip("/").rsplit("/", 1)[-1]
        ident: Any = int(last) if last.isdigit() else last
        self._reply(200, {"id": ident, "name": f"user {ident}", "path": path, "host": host})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lock: threading.Lock
    seen: dict[str, int]
    upstream: Upstream
    keyed: KeyedAPI


class StubServer:
    """The stub on an ephemeral port of 127.0.0.1, served from a daemon thread."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.lock = threading.Lock()
        self._server.seen = {}
        self._server.upstream = Upstream()
        self._server.keyed = KeyedAPI()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Forget which paths ``flaky`` has already failed once."""
        with self._server.lock:
            self._server.seen.clear()
        self._server.upstream.reset()
        self._server.keyed.reset()

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.upstream.stopping.set()  # hanging requests answer now
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
