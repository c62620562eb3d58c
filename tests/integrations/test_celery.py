"""examples/celery_tasks.py in Celery's eager mode, against an inventory server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("celery")
pytest.importorskip("httpx")

import httpx
from celery.exceptions import Retry
from examples import celery_tasks
from examples.celery_tasks import InventoryBusyError, app, fetch_stock_level, refresh_stock

from opero import AllFailedError
from opero.testing import no_waits

EAGER = {
    "task_always_eager": True,
    "task_eager_propagates": True,
    "task_store_eager_result": False,
    "broker_url": "memory://",
    "result_backend": "cache+memory://",
}


class Inventory(ThreadingHTTPServer):
    """An inventory service on 127.0.0.1: 503 for the first ``failures`` requests.

    ``GET /stock/{sku}`` answers ``{"level": n}`` for known SKUs and 404 otherwise.
    Every request path is recorded in :attr:`requests`: the real calls made.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _InventoryHandler)
        self.failures = 0
        self.levels = {"SKU-1": 7}
        self.requests: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, path: str) -> tuple[int, dict[str, object]]:
        with self.lock:
            self.requests.append(path)
            if len(self.requests) <= self.failures:
                return 503, {"error": "busy"}
        sku = path.removeprefix("/stock/")
        if sku in self.levels:
            return 200, {"sku": sku, "level": self.levels[sku]}
        return 404, {"error": "unknown sku"}


class _InventoryHandler(BaseHTTPRequestHandler):
    server: Inventory

    def do_GET(self) -> None:
        status, body = self.server.answer(self.path)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""


@pytest.fixture
def eager() -> Iterator[None]:
    """Celery runs tasks in the calling thread; opero's backoff takes no time."""
    saved = {key: app.conf[key] for key in EAGER}
    app.conf.update(EAGER)
    try:
        with no_waits():
            yield
    finally:
        app.conf.update(saved)


@pytest.fixture
def inventory(eager: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Inventory]:
    """A running inventory server that the example module points at."""
    server = Inventory()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    monkeypatch.setattr(celery_tasks, "INVENTORY_URL", server.url)
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def test_a_blip_is_retried_inside_the_task(inventory: Inventory) -> None:
    inventory.failures = 2
    before = fetch_stock_level.statistics()

    result = refresh_stock.delay("SKU-1")

    assert result.get(timeout=5) == 7
    assert result.state == "SUCCESS"
    assert inventory.requests == ["/stock/SKU-1"] * 3
    after = fetch_stock_level.statistics()
    assert after.retries - before.retries == 2
    assert after.attempts - before.attempts == 3


def test_when_opero_gives_up_the_task_asks_celery_for_a_retry(inventory: Inventory) -> None:
    inventory.failures = 1000

    # Eager mode with task_eager_propagates hands the retry request back to the caller.
    with pytest.raises(Retry) as info:
        refresh_stock.delay("SKU-1")

    assert inventory.requests == ["/stock/SKU-1"] * 3
    assert info.value.when == 60
    error = info.value.exc
    assert isinstance(error, AllFailedError)
    assert error.attempt_count == 3
    assert all(isinstance(e, InventoryBusyError) for e in error.errors)
    assert "503" in str(error.errors[-1])


def test_on_the_last_celery_retry_all_failed_error_surfaces(inventory: Inventory) -> None:
    inventory.failures = 1000

    with pytest.raises(AllFailedError) as info:
        refresh_stock.apply(("SKU-1",), retries=2)  # as if Celery had retried twice already

    assert info.value.attempt_count == 3
    assert inventory.requests == ["/stock/SKU-1"] * 3


def test_celery_retries_run_eagerly_then_the_task_fails(inventory: Inventory) -> None:
    inventory.failures = 1000
    app.conf.task_eager_propagates = False

    result = refresh_stock.delay("SKU-1")

    # 3 opero attempts in each of 3 task runs: the first and max_retries=2 Celery retries.
    assert inventory.requests == ["/stock/SKU-1"] * 9
    assert result.state == "FAILURE"
    assert isinstance(result.result, AllFailedError)
    assert result.result.attempt_count == 3
    with pytest.raises(AllFailedError):
        result.get(timeout=5)


def test_the_task_recovers_when_a_celery_retry_succeeds(inventory: Inventory) -> None:
    inventory.failures = 4  # the first run fails 3 times; the Celery retry fails once, then works
    app.conf.task_eager_propagates = False

    result = refresh_stock.delay("SKU-1")

    assert result.state == "SUCCESS"
    assert result.get(timeout=5) == 7
    assert len(inventory.requests) == 5


def test_the_failure_survives_the_result_backend(
    inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker stores the failure in the result backend, serialized; eager mode can too.
    inventory.failures = 1000
    app.conf.update(task_eager_propagates=False, task_store_eager_result=True)
    monkeypatch.setattr(refresh_stock, "store_eager_result", True)  # read when the task was made

    result = refresh_stock.delay("SKU-1")
    stored = app.AsyncResult(result.id)

    assert stored.state == "FAILURE"
    assert isinstance(stored.result, AllFailedError)
    assert stored.result is not result.result  # read back from the backend, not the same object
    assert str(stored.result).startswith(
        "3 calls of examples.celery_tasks.fetch_stock_level failed: 3 attempts\n"
    )
    # The json result backend keeps only args: the count and each attempt's line survive.
    assert stored.result.attempt_count == 3
    assert [str(e) for e in stored.result.errors] == [
        "InventoryBusyError: inventory service answered 503"
    ] * 3
    stored.forget()


def test_a_client_error_is_not_retried_by_opero_or_celery(inventory: Inventory) -> None:
    with pytest.raises(httpx.HTTPStatusError) as info:
        refresh_stock.delay("SKU-404")

    assert info.value.response.status_code == 404
    assert inventory.requests == ["/stock/SKU-404"]


def test_an_unreachable_service_is_retried(eager: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A socket bound but not listening refuses every connection: a real TransportError.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        host, port = closed.getsockname()
        monkeypatch.setattr(celery_tasks, "INVENTORY_URL", f"http://{host}:{port}")
        before = fetch_stock_level.statistics()

        with pytest.raises(AllFailedError) as info:
            refresh_stock.apply(("SKU-1",), retries=2)

    assert info.value.attempt_count == 3
    assert all(isinstance(e, httpx.ConnectError) for e in info.value.errors)
    assert fetch_stock_level.statistics().attempts - before.attempts == 3
