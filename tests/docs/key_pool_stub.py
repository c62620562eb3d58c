"""The ``keys`` host of the docs stub: an API that answers by the key each request sends.

The Key pools page's worked example needs a server whose answer depends on the API
key alone, the same way every run, whatever clock the example runs on.  So the
rules below count requests rather than read the time.  The key comes in
``Authorization: Bearer <key>``:

* a key with ``revoked`` in it: always 401 (``{"error": "key revoked"}``);
* a key with ``busy`` in it: over its quota every other request: its 1st, 3rd, 5th...
  requests answer 200, its 2nd, 4th, 6th... answer 429 with ``Retry-After: 2``;
* any other key (or none): 200.

A 200 is ``{"path": ..., "query": {...}}``.  No answer ever holds the key.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["RETRY_AFTER", "KeyedAPI", "answer_by_key"]

#: The ``Retry-After`` a busy key's 429 asks for, in seconds.
RETRY_AFTER = 2

Answer = tuple[int, dict[str, str], dict[str, Any]]


class KeyedAPI:
    """The host's state: how many requests each busy key has made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget the busy keys' requests (each docs example starts afresh)."""
        with self._lock:
            self._seen.clear()

    def decide(self, target: str, authorization: str) -> Answer:
        """Status, extra headers and JSON body for ``target`` (path and query) and a key."""
        key = authorization.removeprefix("Bearer ")
        if "revoked" in key:
            return 401, {}, {"error": "key revoked"}
        if "busy" in key:
            with self._lock:
                self._seen[key] += 1
                over_quota = self._seen[key] % 2 == 0
            if over_quota:
                return 429, {"Retry-After": str(RETRY_AFTER)}, {"error": "slow down"}
        parts = urlsplit(target)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        return 200, {}, {"path": parts.path or "/", "query": query}


def answer_by_key(handler: BaseHTTPRequestHandler, api: KeyedAPI, target: str) -> None:
    """Answer ``handler``'s request as ``api`` decides for ``target`` and its key."""
    status, extra, body = api.decide(target, str(handler.headers.get("Authorization") or ""))
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in extra.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
