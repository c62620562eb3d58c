"""Code as a user writes it, checked by mypy --strict and pyright (strict): no error allowed.

It decorates module functions and instance and class methods, sync and
``async def``, maps sync and async functions, and asserts what each checker
infers with ``assert_type`` (an error when the inferred type differs, a
no-op at run time).  ``tests/test_typing.py`` runs both checkers on it and
also imports it and calls its ``run_*`` functions, so the decorated methods
are shown to bind at run time too.  ``@staticmethod`` over ``@opero`` is in
``expected_errors.py``: mypy rejects it (a limit of mypy, shown there), pyright
accepts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from typing_extensions import assert_type

from opero import (
    AllFailedError,
    AttemptRecord,
    Breaker,
    OperoFunction,
    correlation,
    correlation_id,
    opero,
    opmap,
)
from opero.core.stats import Statistics

# --- module functions ------------------------------------------------------------------


@opero(
    retries=2,
    cache=True,
    cache_backend="memory",
    cache_serializer="pickle",
    rate_limit=1000,
    rate_limit_scope="per_args",
    rate_limit_backend="memory",
)
def lookup(key: str, *, default: int = 0) -> int:
    return len(key) + default


class RevokedKey(Exception):
    """A 401: the next key may work."""


def server_said(error: BaseException) -> float | None:
    return 1.0 if isinstance(error, ConnectionError) else None


@opero(
    retries=3,
    arg_fallback="keys",
    fallback_on=RevokedKey,
    retry_on=lambda error: isinstance(error, (ConnectionError, TimeoutError)),
    retry_if_result=lambda status: status >= 500,
    retry_after=server_said,
    max_retry_after=60,
    attempt_timeout=2.5,
    deadline=10,
    rate_limit=5,
    rate_limit_per="call",
)
def routed(path: str, keys: list[str]) -> int:
    return 200 if keys[0] and path else 503


@opero(
    arg_fallback="keys",
    fallback_on=RevokedKey,
    fallback_strategy="least_loaded",
    candidate_breaker=Breaker(failure_threshold=1, cooldown=60),
    candidate_rate_limit=10,
    candidate_rate_limit_burst=2,
    circuit_breaker=True,
)
def pooled(path: str, keys: list[str]) -> int:
    return 200 if keys[0] and path else 503


@opero(
    arg_fallback="keys",
    candidate_breaker=True,
    breaker_backend="redis",
    breaker_backend_config={"url": "redis://127.0.0.1:6379/0"},
)
def shared_pool(path: str, keys: list[str]) -> int:
    return 200 if keys[0] and path else 503


@opmap(progress=False, arg_fallback="keys", candidate_breaker=True, fallback_strategy="round_robin")
def pooled_map(x: int, keys: list[str]) -> int:
    return x


@opmap(progress=False, retry_on=(ConnectionError,), rate_limit_per="attempt", deadline=1)
def routed_map(x: int) -> int:
    return x


@opero
def bare(x: float) -> float:
    return x


@opero(retries=1, rate_limit=1000, rate_limit_scope="search_api")  # a named group
async def fetch(url: str, timeout: float = 1.0) -> bytes:
    return url.encode()


def run_module_functions() -> None:
    assert_type(lookup("ab"), int)
    assert_type(lookup("ab", default=1), int)
    assert_type(bare(1.5), float)
    # mypy infers Coroutine, pyright the narrower types.CoroutineType: assign, then await.
    pending: Coroutine[Any, Any, bytes] = fetch("u", 2.0)
    assert_type(asyncio.run(pending), bytes)
    as_function: OperoFunction[[float], float] = bare
    assert as_function(2.0) == 2.0
    lookup.cache_clear()
    assert_type(lookup.statistics(), Statistics)
    assert_type(fetch.statistics().calls, int)
    assert_type(routed("/a", ["k1", "k2"]), int)
    assert_type(routed_map([1, 2]), list[int | BaseException])


# --- methods ---------------------------------------------------------------------------


class Client:
    """A client whose methods are decorated: ``self`` and ``cls`` are bound."""

    def __init__(self, base: str) -> None:
        self.base = base

    @opero(retries=1, cache=True)
    def get(self, path: str, *, scale: int = 1) -> str:
        return (self.base + path) * scale

    @opero(retries=1)
    async def aget(self, path: str) -> bytes:
        return (self.base + path).encode()

    @classmethod
    @opero
    def build(cls, base: str) -> Client:
        return cls(base)

    @classmethod
    @opero(retries=1)
    async def abuild(cls, base: str) -> Client:
        return cls(base)


class SubClient(Client):
    """A subclass inherits the decorated methods with ``self`` bound to it."""


def run_methods() -> None:
    client = Client("https://x")
    assert_type(client.get("/a"), str)
    assert_type(client.get("/a", scale=2), str)
    assert_type(Client.get(client, "/a"), str)  # through the class: self is passed
    assert_type(SubClient("s").get("/b"), str)
    assert_type(asyncio.run(client.aget("/a")), bytes)
    assert_type(Client.build("b"), Client)
    assert_type(client.build("b"), Client)
    assert_type(asyncio.run(Client.abuild("b")), Client)
    assert_type(client.get.statistics(), Statistics)
    client.get.cache_clear()
    Client.get.cache_clear()
    assert_type(client.aget.statistics().calls, int)
    assert_type(Client.build.statistics(), Statistics)
    Client.abuild.cache_clear()
    assert client.get("/a") == "https://x/a"
    assert client.get.statistics().calls >= 1


# --- maps --------------------------------------------------------------------------------


@opmap(workers=2, progress=False, retries=1, cache=True, cache_backend="memory")
def square(x: int, scale: int = 1) -> int:
    return x * x * scale


@opmap
def length(text: str) -> int:
    return len(text)


@opmap(mode="async", workers=2, progress=False, rate_limit=1000)
async def download(url: str, *, prefix: str = "") -> bytes:
    return (prefix + url).encode()


@opmap(progress=False)
async def shout(text: str) -> str:
    return text.upper()


def run_sync_maps() -> None:
    results = square([1, 2, 3], scale=2)
    assert_type(results, list[int | BaseException])
    assert_type(square(range(3)), list[int | BaseException])
    assert_type(length(["a", "bb"]), list[int | BaseException])
    assert_type(square.imap([1, 2]), Iterator[int | BaseException])
    assert_type(square.imap_unordered([1, 2], 3), Iterator[int | BaseException])
    total = 0
    for value in square.imap(iter([1, 2])):
        assert_type(value, int | BaseException)
        if not isinstance(value, BaseException):
            total += value
    assert total == 5
    assert_type(square.statistics(), Statistics)
    square.cache_clear()
    assert results == [2, 8, 18]


async def use_async_maps() -> list[bytes]:
    pending = download(["a", "b"], prefix="/")
    results = await assert_type(pending, Coroutine[Any, Any, list[bytes | BaseException]])
    assert_type(results, list[bytes | BaseException])
    assert_type(await shout(("a", "b")), list[str | BaseException])
    assert_type(download.imap(["a"]), AsyncIterator[bytes | BaseException])
    assert_type(download.imap_unordered(["a"], prefix="p"), AsyncIterator[bytes | BaseException])
    seen: list[bytes] = []
    async for value in download.imap(["c"]):
        assert_type(value, bytes | BaseException)
        if isinstance(value, bytes):
            seen.append(value)
    assert_type(download.statistics().calls, int)
    download.cache_clear()
    return [r for r in results if isinstance(r, bytes)] + seen


def run_async_maps() -> None:
    assert asyncio.run(use_async_maps()) == [b"/a", b"/b", b"c"]


# --- error context: attempt records and correlation ids ---------------------------------


@opero(retries=1, min_delay=0.001, arg_fallback="keys")
def always_down(path: str, keys: list[str]) -> int:
    raise ConnectionError(path)


def failure_of_always_down() -> AllFailedError:
    try:
        always_down("/a", ["k1", "k2"])
    except AllFailedError as error:
        return error
    raise AssertionError


def run_error_context() -> None:
    with correlation("req-1") as request_id:
        assert_type(request_id, str)
        assert_type(correlation_id(), str | None)
        error = failure_of_always_down()
    assert_type(error.correlation_id, str | None)
    assert_type(error.attempts, tuple[AttemptRecord, ...])
    first = error.attempts[0]
    assert_type(first.candidate, int | None)
    assert_type(first.wait, float | None)
    assert_type(first.error, BaseException)
    assert error.correlation_id == request_id
    assert [r.candidate for r in error.attempts] == [0, 1, 0, 1]


async def use_correlation_async() -> str | None:
    async with correlation() as made:
        assert_type(made, str)
        return correlation_id()


def run_correlation_async() -> None:
    assert asyncio.run(use_correlation_async()) is not None
