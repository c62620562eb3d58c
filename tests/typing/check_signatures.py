"""Checked by mypy --strict and pyright: decorated functions keep their signatures.

Misuse (wrong arguments, bad settings) is in ``expected_errors.py``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from opero import OperoFunction, opero


@opero(retries=2, cache=True)
def greet(name: str, times: int = 1) -> str:
    return name * times


@opero
def bare(x: float) -> float:
    return x


@opero(arg_fallback="key")
async def fetch(url: str, key: list[str]) -> bytes:
    return url.encode()


assert_type(greet("a", times=2), str)
assert_type(bare(1.0), float)
as_async: OperoFunction[[str, list[str]], Coroutine[Any, Any, bytes]] = fetch
as_plain: OperoFunction[[str, int], str] = greet
greet.cache_clear()
calls: int = greet.statistics().calls


async def use() -> bytes:
    result = await fetch("u", key=["a", "b"])
    assert_type(result, bytes)
    return result
