"""The shared rate limit's one Lua script, and the per-loop clients that run it.

One script does both things a shared schedule is asked: book a start, or
pause the scope.  Running both on the server, atomically and on the server's
``TIME``, means a pause written by one process holds every other process's
next reservation, whatever their clocks say.
"""

from __future__ import annotations

import asyncio
from typing import Final, final

import redis.asyncio
from redis.commands.core import AsyncScript

from opero.core.backends.redis_client import close_with_loop

__all__ = ["GCRA", "LoopClient"]

#: KEYS[1]: the schedule; ARGV[1]: interval and ARGV[2]: burst tolerance, both in
#: microseconds.  Books the next start and returns the microseconds to wait, as a
#: string because redis would truncate a Lua number to an integer.  With ARGV[3]
#: (microseconds), pauses instead: the schedule moves so that no start comes
#: before now + ARGV[3] (never earlier than it already was), and "0" is returned.
#: Times are written with 17 digits: Lua's default 14 would round microseconds
#: since 1970.  The key expires just after its time has passed, when a missing
#: key means the same (and a key holding garbage counts as missing).
GCRA: Final = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local tolerance = tonumber(ARGV[2])
local start = math.max(now, tat - tolerance)
local next_tat = tat + tonumber(ARGV[1])
if ARGV[3] then
  start = now
  next_tat = math.max(tat, now + tonumber(ARGV[3]) + tolerance)
end
redis.call('SET', KEYS[1], string.format('%.17g', next_tat),
           'PX', math.ceil((next_tat - now) / 1000) + 1)
return string.format('%.17g', start - now)
"""


@final
class LoopClient:
    """The async client of one event loop (an asyncio client is bound to its loop)."""

    __slots__ = ("closer", "loop", "script")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: redis.asyncio.Redis) -> None:
        self.loop = loop
        self.script: AsyncScript = client.register_script(GCRA)
        self.closer = close_with_loop(client)
