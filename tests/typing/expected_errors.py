"""Misuse that mypy --strict and pyright must reject: each bad line carries its marker.

``tests/test_typing.py`` runs both checkers on this file and compares the
lines they flag with the markers, both ways (every marked line is flagged,
no other line is):

* ``# E: text`` — both checkers report an error on this line whose message
  (with mypy's ``[code]`` and pyright's ``(rule)`` appended) contains
  ``text``; ``# E: a | b`` accepts either text, for each checker.
* ``# E[mypy]: text`` or ``# E[pyright]: text`` — only that checker reports
  it; the other must accept the line.

Lines without a marker are accepted by both, which documents what a checker
cannot catch (a misspelt rate-limit scope kind is a group name to it).  The
project's ``mypy`` run skips this file (``exclude`` in pyproject.toml).  The
bad calls sit in functions that never run, so importing the file (pytest
collects it for doctests) raises nothing.
"""

from __future__ import annotations

from typing_extensions import assert_type

from opero import opero, opmap

# --- @opero: calls are checked against the decorated function's signature --------------


@opero(retries=2, cache=True)
def greet(name: str, times: int = 1) -> str:
    return name * times


@opero
async def fetch(url: str) -> bytes:
    return url.encode()


class Client:
    @opero
    def get(self, path: str, *, scale: int = 1) -> str:
        return path * scale

    @opero
    async def aget(self, path: str) -> bytes:
        return path.encode()

    @classmethod
    @opero
    def build(cls, base: str) -> Client:
        return cls()


def wrong_calls(client: Client) -> None:
    greet(1)  # E: [arg-type] | reportArgumentType
    greet("a", times="x")  # E: [arg-type] | reportArgumentType
    greet()  # E: [call-arg] | reportCallIssue
    greet("a", nope=1)  # E: [call-arg] | reportCallIssue
    fetch(b"u")  # E: [arg-type] | reportArgumentType
    client.get(1)  # E: [arg-type] | reportArgumentType
    client.get()  # E: [call-arg] | reportCallIssue
    client.get("/a", 2)  # E: [call-arg] | reportCallIssue
    Client.get("/a")  # E: [call-arg] | reportCallIssue
    Client.build(1)  # E: [arg-type] | reportArgumentType
    client.build()  # E: [call-arg] | reportCallIssue
    client.get.cache_info()  # E: [attr-defined] | reportAttributeAccessIssue
    _ = client.get.statistics().hitz  # E: [attr-defined] | reportAttributeAccessIssue


async def wrong_results(client: Client) -> None:
    count: int = greet("a")  # E: [assignment] | reportAssignmentType
    data: str = await client.aget("/a")  # E: [assignment] | reportAssignmentType
    await client.aget(1)  # E: [arg-type] | reportArgumentType
    fetch("u").decode()  # E: [attr-defined] | reportAttributeAccessIssue
    del count, data


def wrong_settings() -> None:
    opero(retries="three")  # E: [call-overload] | parameter "retries"
    opero(cache_backend="reddis")  # E: [call-overload] | parameter "cache_backend"
    opero(cache_serializer="yaml")  # E: [call-overload] | parameter "cache_serializer"
    opero(rate_limit_backend="disk")  # E: [call-overload] | parameter "rate_limit_backend"
    opero(rate_limit_scope=None)  # E: [call-overload] | parameter "rate_limit_scope"
    opero(rate_limit_scope=3)  # E: [call-overload] | parameter "rate_limit_scope"
    opero(retriez=3)  # E: did you mean "retries"? | reportCallIssue
    opero(rate_limit_per="second")  # E: [call-overload] | parameter "rate_limit_per"
    opero(fallback_strategy="random")  # E: [call-overload] | parameter "fallback_strategy"
    opero(breaker_backend="disk")  # E: [call-overload] | parameter "breaker_backend"
    opero(deadline="5")  # E: [call-overload] | parameter "deadline"
    opero(fallback_on="AuthError")  # E: [call-overload] | parameter "fallback_on"
    # Not caught by a checker: a group may have any name, so this is a group to it.  At
    # decoration it is a ConfigurationError ("unknown rate_limit_scope", any "per_" typo).
    opero(rate_limit_scope="per_fuction")
    opero(rate_limit_scope="search_api")  # a named group: fine


# --- @staticmethod over @opero: mypy binds the first parameter; pyright does not ---------


class Tools:
    @staticmethod
    @opero
    def double(x: int) -> int:
        return 2 * x

    @staticmethod
    @opero(retries=1)
    async def adouble(x: int) -> int:
        return 2 * x


async def use_static_methods(tools: Tools) -> None:
    assert_type(Tools.double(2), int)
    assert_type(await Tools.adouble(2), int)
    Tools.double.cache_clear()
    assert_type(tools.double(2), int)  # E[mypy]: Too many arguments for "__call__" of "OperoMethod"
    assert_type(await tools.adouble(2), int)  # E[mypy]: Too many arguments for "__call__"
    tools.double.cache_clear()


# --- @opmap: items must fit the first parameter; settings are the same as @opero's ----------


@opmap(progress=False)
def square(x: int, scale: int = 1) -> int:
    return x * x * scale


@opmap(mode="async", progress=False)
async def download(url: str) -> bytes:
    return url.encode()


async def wrong_maps() -> None:
    square(["a"])  # E: [list-item] | reportArgumentType
    square([1], scale="x")  # E: [arg-type] | reportArgumentType
    square(1)  # E: [arg-type] | reportArgumentType
    square([1], 2, 3)  # E: [call-arg] | reportCallIssue
    total: list[int] = square([1])  # E: [assignment] | reportAssignmentType
    square.imap([b"x"])  # E: [list-item] | reportArgumentType
    async for _ in square.imap([1]):  # E: [attr-defined] | reportGeneralTypeIssues
        pass
    download([1])  # E: [list-item] | reportArgumentType
    download(["a"]).append(b"")  # E: [attr-defined] | reportAttributeAccessIssue
    for _ in download.imap(["a"]):  # E: [attr-defined] | reportGeneralTypeIssues
        pass
    download.imap_unordered(["a"]).close()  # E: [attr-defined] | reportAttributeAccessIssue
    square.cache_info()  # E: [attr-defined] | reportAttributeAccessIssue
    del total


def wrong_map_settings() -> None:
    opmap(retries="three")  # E: [call-overload] | parameter "retries"
    opmap(retriez=3)  # E: did you mean "retries"? | reportCallIssue
    opmap(rate_limit_per="item")  # E: [call-overload] | parameter "rate_limit_per"
    opmap(mode="threads")  # E: [call-overload] | parameter "mode"
    opmap(start_method="thread")  # E: [call-overload] | parameter "start_method"
    opmap(workers="4")  # E: [call-overload] | parameter "workers"
    opmap(progress="yes")  # E: [call-overload] | parameter "progress"
    opmap(cache_backend="reddis")  # E: [call-overload] | parameter "cache_backend"
    opmap(rate_limit_scope=None)  # E: [call-overload] | parameter "rate_limit_scope"
