"""SharedReads: concurrent reads of one key by tasks of one loop share one round trip."""

from __future__ import annotations

import asyncio

import pytest

from opero.core.backends.coalesce import SharedReads


class Source:
    """A slow read that counts how often it ran; it fails or blocks when told to."""

    def __init__(self) -> None:
        self.reads = 0
        self.fail = False
        self.release = asyncio.Event()

    async def fetch(self) -> str:
        self.reads += 1
        number = self.reads
        await self.release.wait()
        if self.fail:
            raise ConnectionError("down")
        return f"value {number}"


@pytest.mark.asyncio
async def test_concurrent_reads_of_one_key_run_once_and_others_apart() -> None:
    shared, source = SharedReads(), Source()
    tasks = [asyncio.create_task(shared.read(k, source.fetch)) for k in ("a", "a", "a", "b")]
    await asyncio.sleep(0)
    assert source.reads == 2  # one for "a", one for "b"
    source.release.set()
    assert sorted(await asyncio.gather(*tasks)) == ["value 1", "value 1", "value 1", "value 2"]
    assert await shared.read("a", source.fetch) == "value 3"  # a later read goes out again


@pytest.mark.asyncio
async def test_a_failed_read_fails_every_reader_that_shared_it() -> None:
    shared, source = SharedReads(), Source()
    source.fail = True
    tasks = [asyncio.create_task(shared.read("a", source.fetch)) for _ in range(3)]
    await asyncio.sleep(0)
    source.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3
    assert source.reads == 1


@pytest.mark.asyncio
async def test_a_cancelled_reader_hands_on_and_a_cancelled_waiter_leaves_alone() -> None:
    shared, source = SharedReads(), Source()
    reader = asyncio.create_task(shared.read("a", source.fetch))
    waiters = [asyncio.create_task(shared.read("a", source.fetch)) for _ in range(2)]
    await asyncio.sleep(0)
    waiters[1].cancel()
    reader.cancel()
    for _ in range(20):  # a few loop turns: the cancellation travels through the shield
        await asyncio.sleep(0)
    assert source.reads == 2  # the first waiter read again, rather than be cancelled
    source.release.set()
    assert await waiters[0] == "value 2"
    for task in (reader, waiters[1]):
        with pytest.raises(asyncio.CancelledError):
            await task
