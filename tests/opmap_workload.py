"""Deterministic workloads whose exact statistics are known, for every ``@opmap`` mode.

Module-level, so process and Dask workers import them by reference.  What each
item does depends only on the item (and, for ``flaky``, on how often that item
ran before in the same map, keyed by a token unique to the map), so every mode
must report the same counts.
"""

from __future__ import annotations

import threading
from typing import Any

#: For ``keyed`` over range(8) with retries=1, arg_fallback="api_key" (2 candidates),
#: retry_on=(PermissionError, ConnectionError), min_delay=0.01:
#: items 0, 2, 4, 6: revoked key, then success (2 calls, 1 fallback);
#: items 1, 5: every call fails, 2 attempts x 2 candidates (4 calls, 2 fallbacks, 1 retry);
#: items 3, 7: KeyError, not retried (1 call).
KEYED_STATISTICS = {
    "calls": 8,
    "attempts": 18,
    "retries": 2,
    "fallbacks": 8,
    "failures": 4,
    "cache_hits": 0,
    "cache_misses": 0,
    "cache_errors": 0,
    "candidates": (),
    "breaker": None,
}
KEYED_WAITED = 0.02
KEYED_SETTINGS: dict[str, Any] = {
    "retries": 1,
    "arg_fallback": "api_key",
    "retry_on": (PermissionError, ConnectionError),
    "min_delay": 0.01,
}
KEYS = ["revoked", "good"]


def keyed(n: int, api_key: list[str]) -> int:
    if n % 4 == 3:
        raise KeyError(n)
    if api_key[0] == "revoked":
        raise PermissionError("key revoked")
    if n % 4 == 1:
        raise ConnectionError("upstream down")
    return n


async def akeyed(n: int, api_key: list[str]) -> int:
    return keyed(n, api_key)


#: For ``flaky`` over range(10) with retries=2, retry_on=ConnectionError, min_delay=0.01,
#: backoff_factor=2 (no fallback: process workers take the direct fast path):
#: item n fails its first n % 3 calls, except n % 5 == 4 (4, 9), which raise ValueError.
#: Items 0, 3, 6: 1 call; 1, 7: 2 calls (1 retry, 0.01 s); 2, 5, 8: 3 calls (2 retries,
#: 0.01 + 0.02 s); 4, 9: 1 call, a failure.
FLAKY_STATISTICS = {
    "calls": 10,
    "attempts": 3 + 2 * 2 + 3 * 3 + 2,
    "retries": 2 + 3 * 2,
    "fallbacks": 0,
    "failures": 2,
    "cache_hits": 0,
    "cache_misses": 0,
    "cache_errors": 0,
    "candidates": (),
    "breaker": None,
}
FLAKY_WAITED = 2 * 0.01 + 3 * 0.03
FLAKY_SETTINGS: dict[str, Any] = {
    "retries": 2,
    "retry_on": ConnectionError,
    "min_delay": 0.01,
    "backoff_factor": 2.0,
}

_seen: dict[tuple[str, int], int] = {}
_seen_lock = threading.Lock()


def flaky(n: int, token: str) -> int:
    if n % 5 == 4:
        raise ValueError(n)
    with _seen_lock:
        calls = _seen[token, n] = _seen.get((token, n), 0) + 1
    if calls <= n % 3:
        raise ConnectionError("reset")
    return n


async def aflaky(n: int, token: str) -> int:
    return flaky(n, token)
