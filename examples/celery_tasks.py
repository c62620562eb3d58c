"""Celery: a task whose call to a flaky HTTP service is made resilient with ``@opero``.

Two layers of retrying, each at its own time scale:

* ``@opero`` retries short blips inside the task, within a second or two, without
  going back through the broker.
* When every opero attempt fails, ``AllFailedError`` reaches the task, and
  ``autoretry_for`` has Celery run the task again a minute later, freeing the worker
  meanwhile.  After ``max_retries`` Celery gives up: ``AllFailedError`` is the task's
  failure.

Start a worker with ``celery -A examples.celery_tasks worker``.
"""

from __future__ import annotations

import os

import httpx
from celery import Celery

from opero import AllFailedError, opero

app = Celery("opero_examples")
app.conf.update(
    # Use your real broker and result backend here, e.g. redis:// or amqp://.
    broker_url=os.environ.get("CELERY_BROKER_URL", "memory://"),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", "cache+memory://"),
)

#: Base URL of the inventory service.
INVENTORY_URL = os.environ.get("INVENTORY_URL", "http://127.0.0.1:8080")


class InventoryBusyError(Exception):
    """The inventory service answered 5xx: worth another try."""


@opero(retries=2, min_delay=0.5, retry_on=(httpx.TransportError, InventoryBusyError))
def fetch_stock_level(sku: str) -> int:
    """Units of ``sku`` in stock; a 4xx answer raises ``httpx.HTTPStatusError`` at once."""
    response = httpx.get(f"{INVENTORY_URL}/stock/{sku}", timeout=5.0)
    if response.status_code >= 500:
        msg = f"inventory service answered {response.status_code}"
        raise InventoryBusyError(msg)
    response.raise_for_status()
    return int(response.json()["level"])


@app.task(autoretry_for=(AllFailedError,), max_retries=2, default_retry_delay=60)
def refresh_stock(sku: str) -> int:
    """Read the stock level of ``sku``; if opero gives up, Celery runs the task again later."""
    return fetch_stock_level(sku)
