"""A cached FastAPI route that takes ``request: Request`` and a ``Depends()`` session.

Each request brings a new ``Request`` and a new session, so with those in the key the
cache never hits and keeps every one alive (up to ``cache_maxsize``).  Left out with
``cache_ignore=``, the route hits and nothing of a request outlives it.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Annotated

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")  # starlette's TestClient transport

from fastapi import BackgroundTasks, Depends, FastAPI, Request, WebSocket
from fastapi.testclient import TestClient

from opero import CacheKeyWarning, opero


class Session:
    """A database session: holds a lock, so it can be neither hashed by value nor pickled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queries = 0

    def stock(self, sku: str) -> int:
        self.queries += 1
        return len(sku)


def get_session() -> Iterator[Session]:
    """A new session for each request (module level, so FastAPI resolves the annotation)."""
    yield Session()


def make_app(*, ignore: tuple[str, ...]) -> tuple[FastAPI, list[weakref.ref[object]]]:
    """The app, and a weak reference to every Request and Session a call saw."""
    app = FastAPI()
    seen: list[weakref.ref[object]] = []

    @app.get("/stock/{sku}")
    @opero(cache=True, cache_ignore=ignore)
    async def stock(
        sku: str, request: Request, db: Annotated[Session, Depends(get_session)]
    ) -> dict[str, object]:
        seen.extend((weakref.ref(request), weakref.ref(db)))
        return {"sku": sku, "level": db.stock(sku), "path": request.url.path}

    return app, seen


def test_with_request_and_session_ignored_the_route_hits_and_keeps_nothing() -> None:
    app, seen = make_app(ignore=("request", "db"))
    with TestClient(app) as client:
        answers = [client.get("/stock/ABC").json() for _ in range(5)]
        assert client.get("/stock/XY").json()["level"] == 2
    assert answers == [{"sku": "ABC", "level": 3, "path": "/stock/ABC"}] * 5
    assert len(seen) == 4  # two real calls: /stock/ABC once, /stock/XY once
    route = next(r for r in app.routes if getattr(r, "path", "") == "/stock/{sku}")
    stats = route.endpoint.statistics()  # type: ignore[attr-defined]
    assert (stats.cache_hits, stats.cache_misses) == (4, 2)
    gc.collect()
    assert [ref() for ref in seen] == [None] * 4  # no Request, no Session kept by the cache


def test_a_request_parameter_left_in_the_key_is_reported_at_decoration() -> None:
    # In the key, every request would be a miss and would stay in memory: say so when the
    # route is defined, naming the parameter and the setting that fixes it.
    with pytest.warns(CacheKeyWarning) as caught:
        make_app(ignore=("db",))
    (warning,) = caught.list
    text = str(warning.message)
    assert "'request'" in text
    assert "cache_ignore=('db', 'request')" in text
    assert warning.filename == __file__


def test_an_annotated_websocket_or_background_tasks_parameter_is_reported_too() -> None:
    def handler(
        socket: Annotated[WebSocket, "the connection"], tasks: BackgroundTasks, n: int
    ) -> int:
        return n

    with pytest.warns(
        CacheKeyWarning, match=r"'socket', 'tasks'.*cache_ignore=\('socket', 'tasks'\)"
    ):
        opero(cache=True)(handler)
    opero(cache=True, cache_ignore=("socket", "tasks"))(handler)  # no warning
