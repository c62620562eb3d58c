"""Run in a fresh interpreter: load the shipped functions and report what they do there."""

from __future__ import annotations

import asyncio
import inspect
import json
import pickle
import sys

if __name__ == "__main__":
    with open(sys.argv[1], "rb") as data:
        shipped = pickle.load(data)
    fetch, afetch = shipped["fetch"], shipped["afetch"]
    report = {
        "fetch": [fetch("a"), fetch("a"), fetch("b")],
        "fetch_stats": fetch.statistics().as_dict(),
        "afetch_is_coroutine_function": inspect.iscoroutinefunction(afetch),
        "afetch": [asyncio.run(afetch(2)), asyncio.run(afetch(2))],
        "afetch_stats": afetch.statistics().as_dict(),
        "on_disk": shipped["on_disk"](1),
        "on_disk_stats": shipped["on_disk"].statistics().as_dict(),
        "shared_limit": shipped["shared_limit"](3),
        "mapped": shipped["mapped"]([1, 2, 1]),
        "mapped_stats": shipped["mapped"].statistics().as_dict(),
        "mapped_in_processes": shipped["mapped_in_processes"]([1, 2]),
        "closure": shipped["closure"](1),
        "method": shipped["client"].total(2),
        "name": fetch.__name__,
        "wrapped": fetch.__wrapped__.__name__,
    }
    print(json.dumps(report))
