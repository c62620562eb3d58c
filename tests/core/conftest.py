"""Fixtures for the cache backend tests (helpers in ``store_helpers.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_helpers import (
    ALL_BACKENDS,
    REDIS_HOST,
    REDIS_PORT,
    STORE_BACKENDS,
    Backend,
    answers,
    direct_client,
    make_backend,
    unavailable,
)


@pytest.fixture(scope="session")
def redis_available() -> None:
    if not answers(REDIS_PORT):
        unavailable(f"no redis-server answers on {REDIS_HOST}:{REDIS_PORT}")


@pytest.fixture
def redis_admin(redis_available: None) -> Iterator[Any]:
    """A client on the test database, closed afterwards."""
    client = direct_client()
    yield client
    client.close()


@pytest.fixture
def redis_namespace(redis_admin: Any) -> Iterator[str]:
    """A cache namespace no other test uses; every key under it is deleted afterwards.

    Variants such as ``namespace + "-b"`` are cleaned too.
    """
    namespace = f"t{uuid.uuid4().hex}"
    yield namespace
    keys = list(redis_admin.scan_iter(match=f"opero:cache:{namespace}:*", count=1000))
    if keys:
        redis_admin.delete(*keys)


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    backend = make_backend(request.param, request, tmp_path)
    yield backend
    for client in backend.clients:
        client.close()


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    backend = make_backend(request.param, request, tmp_path)
    yield backend
    for client in backend.clients:
        client.close()
