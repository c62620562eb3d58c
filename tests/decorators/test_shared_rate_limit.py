"""rate_limit_backend="redis" through the decorator: shared groups, async, outages."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from opero import ConfigurationError, opero
from redis_server import require_redis


@pytest.fixture(autouse=True)
def _needs_redis() -> None:
    require_redis()


CONFIG = {"host": "127.0.0.1", "port": 6379, "db": 9}


def test_two_functions_in_one_redis_group_share_the_spacing() -> None:
    group = f"test-group-{uuid.uuid4()}"
    starts: list[float] = []

    @opero(
        rate_limit=100,
        rate_limit_scope=group,
        rate_limit_backend="redis",
        rate_limit_backend_config=CONFIG,
    )
    def get(i: int) -> None:
        starts.append(time.monotonic())

    @opero(
        rate_limit=100,
        rate_limit_scope=group,
        rate_limit_backend="redis",
        rate_limit_backend_config=CONFIG,
    )
    def post(i: int) -> None:
        starts.append(time.monotonic())

    begin = time.monotonic()
    for i in range(5):
        get(i)
        post(i)
    # 10 starts at 100/s: the k-th start is at least k * 10 ms after the first could start
    for k, at in enumerate(sorted(starts)):
        assert at - begin >= k * 0.01 - 0.002
    assert get.__opero__.limiter is post.__opero__.limiter


def test_a_different_rate_for_the_same_redis_group_is_rejected() -> None:
    group = f"test-group-{uuid.uuid4()}"
    opero(
        rate_limit=5,
        rate_limit_scope=group,
        rate_limit_backend="redis",
        rate_limit_backend_config=CONFIG,
    )(lambda: None)
    with pytest.raises(ConfigurationError, match="rate_limit"):
        opero(
            rate_limit=6,
            rate_limit_scope=group,
            rate_limit_backend="redis",
            rate_limit_backend_config=CONFIG,
        )(lambda: None)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rate_limit_scope": "per_args"}, "per_args"),
        ({"rate_limit_backend": "memcached"}, "rate_limit_backend"),
        ({"rate_limit_backend_config": {"hots": "x"}}, "host"),
    ],
)
def test_bad_shared_settings(kwargs: dict[str, object], needle: str) -> None:
    settings: dict[str, object] = {"rate_limit": 1, "rate_limit_backend": "redis", **kwargs}
    with pytest.raises(ConfigurationError, match=needle):
        opero(**settings)(lambda: None)  # type: ignore[arg-type]


def test_async_function_uses_the_shared_schedule() -> None:
    group = f"test-group-{uuid.uuid4()}"
    starts: list[float] = []

    @opero(
        rate_limit=100,
        rate_limit_scope=group,
        rate_limit_backend="redis",
        rate_limit_backend_config=CONFIG,
    )
    async def fetch(i: int) -> None:
        starts.append(time.monotonic())

    async def main() -> float:
        begin = time.monotonic()
        await asyncio.gather(*(fetch(i) for i in range(8)))
        return begin

    for _ in range(2):  # two event loops, one schedule
        starts.clear()
        begin = asyncio.run(main())
        assert len(starts) == 8
        for k, at in enumerate(sorted(starts)):
            assert at - begin >= k * 0.01 - 0.002


def test_unreachable_redis_limits_in_process_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    starts: list[float] = []

    @opero(
        rate_limit=100,
        rate_limit_scope=f"down-{uuid.uuid4()}",
        rate_limit_backend="redis",
        rate_limit_backend_config={"host": "127.0.0.1", "port": 6397},
    )
    def call(i: int) -> int:
        starts.append(time.monotonic())
        return i

    begin = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="opero"):
        assert [call(i) for i in range(5)] == [0, 1, 2, 3, 4]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "limiting within this process" in warnings[0].getMessage()
    for k, at in enumerate(starts):  # still limited, never unlimited
        assert at - begin >= k * 0.01 - 0.002
