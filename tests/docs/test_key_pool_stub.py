"""The docs stub's ``keys`` host answers by key, as the Key pools page's example relies on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from docs_stub_server import StubServer


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with StubServer() as server, httpx.Client(base_url=f"{server.base_url}/keys") as http:
        yield http


def _status(client: httpx.Client, key: str) -> int:
    return client.get("/search?q=x", headers={"Authorization": f"Bearer {key}"}).status_code


def test_a_revoked_key_always_gets_401(client: httpx.Client) -> None:
    assert [_status(client, "sk-revoked-0") for _ in range(3)] == [401, 401, 401]


def test_a_busy_key_is_over_its_quota_every_other_request(client: httpx.Client) -> None:
    headers = {"Authorization": "Bearer sk-busy-1"}
    answers = [client.get("/search", headers=headers) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 429, 200, 429]
    assert answers[1].headers["Retry-After"] == "2"
    assert "Retry-After" not in answers[0].headers
    assert _status(client, "sk-busy-2") == 200  # each busy key counts its own requests


def test_a_healthy_key_is_answered_without_the_key(client: httpx.Client) -> None:
    response = client.get("/search?q=opero", headers={"Authorization": "Bearer sk-fine-2"})
    assert response.status_code == 200
    assert response.json() == {"path": "/search", "query": {"q": "opero"}}
    assert "sk-fine" not in response.text


def test_reset_forgets_the_busy_keys_requests() -> None:
    with StubServer() as server, httpx.Client(base_url=f"{server.base_url}/keys") as http:
        assert [_status(http, "sk-busy-1") for _ in range(2)] == [200, 429]
        server.reset()
        assert _status(http, "sk-busy-1") == 200
