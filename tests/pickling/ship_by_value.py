"""Run as __main__: decorate functions here, use them, and cloudpickle them to a file.

Functions defined in ``__main__`` (a script or a notebook) can only travel by
value: their module does not exist in the process that receives them.
"""

from __future__ import annotations

import json
import sys

import cloudpickle

from opero import opero, opmap

DISK = sys.argv[2]
succeeded: list[object] = []


def make_closure(offset: int):  # a closure over a local value
    @opero(retries=2, min_delay=0.0)
    def shifted(n: int) -> int:
        return n + offset

    return shifted


@opero(
    cache=True,
    retries=2,
    min_delay=0.0,
    rate_limit=1000,
    arg_fallback="key",
    on_success=succeeded.append,
)
def fetch(item: str, key: list[str] = ["down", "up"]) -> str:  # noqa: B006
    if key[0] == "down":
        raise ConnectionError("candidate refused")
    return f"{item} via {key[0]}"


@opero(cache=True)
async def afetch(n: int) -> int:
    return n * 3


@opero(cache=True, cache_backend="disk", cache_backend_config={"directory": DISK})
def on_disk(n: int) -> int:
    return n + 100


@opero(rate_limit=500, rate_limit_backend="redis", rate_limit_scope="opero-test-pickled")
def shared_limit(n: int) -> int:
    return -n


@opmap(mode="thread", workers=2, progress=False, retries=1, cache=True)
def mapped(n: int) -> int:
    return n * 10


@opmap(mode="process", workers=2, progress=False, cache=True, rate_limit=10_000)
def mapped_in_processes(n: int) -> int:
    return n + 1


class Client:
    """A method decorated in __main__ travels with its class."""

    def __init__(self, base: int) -> None:
        self.base = base

    @opero(retries=1)
    def total(self, n: int) -> int:
        return self.base + n


if __name__ == "__main__":
    import asyncio

    # Use everything first, so live state (locks, stores, pools, connections) exists.
    used = {
        "fetch": [fetch("a"), fetch("a")],
        "afetch": asyncio.run(afetch(2)),
        "on_disk": on_disk(1),
        "shared_limit": shared_limit(3),
        "mapped": mapped([1, 2]),
        "mapped_in_processes": mapped_in_processes([1, 2]),
        "closure": make_closure(5)(1),
        "method": Client(7).total(1),
    }
    shipped = {
        "fetch": fetch,
        "afetch": afetch,
        "on_disk": on_disk,
        "shared_limit": shared_limit,
        "mapped": mapped,
        "mapped_in_processes": mapped_in_processes,
        "closure": make_closure(5),
        "client": Client(7),
    }
    with open(sys.argv[1], "wb") as out:
        cloudpickle.dump(shipped, out)
    print(json.dumps(used))
