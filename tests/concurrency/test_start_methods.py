"""Process modes run module-level functions, closures, lambdas and ``__main__`` functions
under every start method (CONTRACT 21).

``__main__`` functions are tested the only honest way: a real script run with
``sys.executable``, whose workers must find the function without importing it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import pytest
from worker_helpers import START_METHODS, run_script, square, write_script

from opero import opmap

# Fork in a threaded parent warns on Python 3.12+; it is what this parameter asks for.
pytestmark = pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks")

ITEMS = [1, 2, 3, 4, 5]


@opmap(mode="process", workers=2, progress=False)
def decorated_at_module_level(x: int) -> int:
    """The module attribute is the mapped wrapper, so cloudpickle must send this by value."""
    return x + 1000


@pytest.mark.parametrize("method", START_METHODS)
def test_module_level_function(method: str) -> None:
    mapped = opmap(mode="process", workers=2, start_method=method, progress=False)(square)
    assert mapped(ITEMS) == [1, 4, 9, 16, 25]


def test_function_decorated_at_module_level() -> None:
    assert decorated_at_module_level(ITEMS) == [1001, 1002, 1003, 1004, 1005]


@pytest.mark.parametrize("method", START_METHODS)
def test_closure_over_local_state(method: str) -> None:
    offset = 7
    table = {1: "one", 2: "two"}

    def describe(x: int) -> str:
        return f"{table.get(x, '?')}+{x + offset}"

    mapped = opmap(mode="process", workers=2, start_method=method, progress=False)(describe)
    assert mapped([1, 2, 3]) == ["one+8", "two+9", "?+10"]


@pytest.mark.parametrize("method", START_METHODS)
def test_lambda(method: str) -> None:
    mapped = opmap(mode="process", workers=2, start_method=method, progress=False)(lambda x: x * 3)
    assert mapped(ITEMS) == [3, 6, 9, 12, 15]


@pytest.mark.parametrize("method", START_METHODS)
def test_partial_and_local_class_results(method: str) -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    def make(x: int, scale: int) -> Point:
        return Point(x * scale)

    mapped = opmap(mode="process", workers=2, start_method=method, progress=False)(
        functools.partial(make, scale=2)
    )
    assert [p.x for p in mapped([1, 2])] == [2, 4]


@pytest.mark.parametrize("method", START_METHODS)
def test_async_closure_in_async_process_mode(method: str) -> None:
    bonus = 100

    async def add_bonus(x: int) -> int:
        await asyncio.sleep(0)
        return x + bonus

    mapped = opmap(mode="async_process", workers=2, start_method=method, progress=False)(add_bonus)
    assert asyncio.run(mapped([1, 2])) == [101, 102]


_MAIN_SCRIPT = """
import asyncio
import json
import sys

from opero import opmap

METHOD = sys.argv[1]
FACTOR = 10


def module_level(x):
    return x * FACTOR


def make_closure(offset):
    def inner(x):
        return x + offset
    return inner


@opmap(mode="process", workers=2, start_method=METHOD, progress=False)
def decorated(x):
    return -x


async def coroutine(x):
    await asyncio.sleep(0)
    return x * x


def main():
    opts = {"mode": "process", "workers": 2, "start_method": METHOD, "progress": False}
    report = {
        "module_level": opmap(**opts)(module_level)([1, 2, 3]),
        "closure": opmap(**opts)(make_closure(5))([1, 2, 3]),
        "lambda": opmap(**opts)(lambda x: x - 1)([1, 2, 3]),
        "decorated": decorated([1, 2, 3]),
        "async_process": asyncio.run(
            opmap(**{**opts, "mode": "async_process"})(coroutine)([1, 2, 3])
        ),
        "mapped_twice": opmap(**opts)(module_level)([4]),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", START_METHODS)
def test_functions_defined_in_main_script(method: str, tmp_path: Path) -> None:
    script = write_script(tmp_path, _MAIN_SCRIPT)
    done = run_script(script, method)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "module_level": [10, 20, 30],
        "closure": [6, 7, 8],
        "lambda": [0, 1, 2],
        "decorated": [-1, -2, -3],
        "async_process": [1, 4, 9],
        "mapped_twice": [40],
    }
    assert "Traceback" not in done.stderr
