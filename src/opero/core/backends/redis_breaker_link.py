"""The Lua script that keeps a breaker, its rest and its budget in redis, and its client.

It is :class:`~opero.core.breaker_state.BreakerState` (the same rules, in the same
order) and the GCRA of :data:`~opero.core.backends.redis_gcra.GCRA`, run atomically on
the server on the server's ``TIME``, so every process and host that shares a key sees
one breaker.  One script does every operation, so an attempt costs one round trip to
acquire (permit, rest check and budget slot at once) and one to record its outcome.

KEYS[1] is the breaker's hash (``opero:breaker:<name>:<index>``), KEYS[2] the
candidate's GCRA key (KEYS[1] + ``":budget"``).  ARGV:

1. the operation: ``a`` acquire (refused while resting or open; books a budget slot
   when permitted), ``b`` book a budget slot only, ``r``/``f`` record a success or a
   failure, ``l`` release a half-open permit, ``p`` rest for ARGV[13] microseconds;
2. the time in microseconds, or ``""`` for the server's ``TIME`` (only tests give one:
   it lets them check each rule on explicit times, as the local breaker's tests do);
3. ``failure_threshold`` (0: none); 4. ``failure_ratio`` (``""``: none);
5. ``window_calls``; 6. a time window's slice in seconds (0: a count window; in
seconds, so a slice number is computed as the local window computes it);
7. ``minimum_calls`` (capped at ``window_calls``); 8. ``cooldown`` and
9. ``max_cooldown`` in microseconds; 10. ``half_open_calls``; 11. the budget's
interval and 12. its burst tolerance in microseconds (interval 0: no budget);
13. the rest in microseconds.

It returns, as strings (redis would truncate a Lua number to an integer): the state
after the operation, the microseconds until an open breaker reopens, until the rest
ends and until the budget's next theoretical arrival (``""`` without a budget), the
operation's result (``a``: ``"1"`` permitted or ``"0"``; ``a``/``b``: the budget
delay as the 7th item; ``r``/``f``: the new state when it changed, else ``""``) and
the state before it.  Times are written with 17 digits (Lua's default 14 would round
microseconds since 1970).  An acquire that changes nothing (a closed breaker) writes
nothing; a hash unwritten for a day longer than it can matter expires, and a missing
hash is a closed, fresh breaker.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Final, final

import redis

from opero.core.backends.base import CoolDown
from opero.core.backends.redis_client import close_client
from opero.core.breaker import DEFAULT_WINDOW_CALLS, Breaker
from opero.core.breaker_window import SLICES
from opero.core.lane import Lane

__all__ = ["BREAKER", "Link", "script_args"]

logger = logging.getLogger("opero")

#: What "redis is unavailable" looks like (as for the shared limiter).
_UNAVAILABLE: Final = (redis.RedisError, OSError, asyncio.TimeoutError)

BREAKER: Final = """
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
local function fmt(x) return string.format('%.17g', x) end
local op, h = ARGV[1], KEYS[1]
local f = redis.call('HMGET', h, 's', 'n', 'k', 'u', 'po', 'pk', 'w', 'wf', 'ts', 'r')
local s = f[1] or 'closed'
local n, k, u = tonumber(f[2]) or 0, tonumber(f[3]) or 0, tonumber(f[4]) or 0
local po, pk = tonumber(f[5]) or 0, tonumber(f[6]) or 0
local w, wf, ts = f[7] or '', tonumber(f[8]) or 0, f[9] or ''
local r = tonumber(f[10]) or 0
local threshold, ratio = tonumber(ARGV[3]), tonumber(ARGV[4])
local half = tonumber(ARGV[10])
local before = s

local function open()
  k = k + 1
  local delay = tonumber(ARGV[8]) * 2 ^ math.min(k - 1, 1023)
  u = now + math.min(delay, tonumber(ARGV[9]))
  s, n = 'open', 0
end

local function close()
  s, k, n, po, pk, w, wf, ts = 'closed', 0, 0, 0, 0, '', 0, ''
end

local function window_add(failed)
  if not ratio then return false end
  local width, minimum = tonumber(ARGV[6]), tonumber(ARGV[7])
  if width == 0 then
    w = w .. (failed and '1' or '0')
    if failed then wf = wf + 1 end
    if #w > tonumber(ARGV[5]) then
      if string.sub(w, 1, 1) == '1' then wf = wf - 1 end
      w = string.sub(w, 2)
    end
    return #w >= minimum and wf / #w >= ratio
  end
  local number = math.floor(now / 1000000 / width)
  local kept, calls, fails = {}, 0, 0
  for sn, sc, sf in string.gmatch(ts, '(-?[%d.e+]+):(%d+):(%d+)') do
    sn, sc, sf = tonumber(sn), tonumber(sc), tonumber(sf)
    if sn > number - SLICES then
      kept[#kept + 1] = {sn, sc, sf}
      calls, fails = calls + sc, fails + sf
    end
  end
  local last = kept[#kept]
  if last and last[1] >= number then
    last[2] = last[2] + 1
    if failed then last[3] = last[3] + 1 end
  else
    kept[#kept + 1] = {number, 1, failed and 1 or 0}
  end
  calls = calls + 1
  if failed then fails = fails + 1 end
  local parts = {}
  for i, slice in ipairs(kept) do
    parts[i] = string.format('%.0f:%d:%d', slice[1], slice[2], slice[3])
  end
  ts = table.concat(parts, ',')
  return calls >= minimum and fails / calls >= ratio
end

local result, delay, tat, changed = '', '', '', op ~= 'b'
local interval, tolerance = tonumber(ARGV[11]), tonumber(ARGV[12])
if op == 'a' or op == 'b' then
  local permitted = true
  changed = false
  if op == 'a' then
    if r > now then
      permitted = false
    elseif s == 'open' then
      if now < u then permitted = false else s, po, pk, changed = 'half_open', 0, 0, true end
    end
    if permitted and s == 'half_open' then
      permitted = po + pk < half
      if permitted then po, changed = po + 1, true end
    end
    result = permitted and '1' or '0'
  end
  if interval > 0 then
    local at = tonumber(redis.call('GET', KEYS[2])) or now
    if at < now then at = now end
    if permitted then
      delay = fmt(math.max(now, at - tolerance) - now)
      at = at + interval
      redis.call('SET', KEYS[2], fmt(at), 'PX', math.ceil((at - now) / 1000) + 1)
    end
    tat = fmt(at - now)
  end
elseif op == 'r' or op == 'f' then
  local failed = op == 'f'
  if s == 'closed' then
    n = failed and n + 1 or 0
    local opened = window_add(failed)
    if opened or (failed and threshold > 0 and n >= threshold) then open() end
  elseif s == 'half_open' then
    po = math.max(0, po - 1)
    if failed then
      open()
    else
      pk = pk + 1
      if pk >= half then close() end
    end
  end
  if s ~= before then result = s end
elseif op == 'l' then
  if s == 'half_open' and po > 0 then po = po - 1 end
elseif op == 'p' then
  r = math.max(r, now + tonumber(ARGV[13]))
end
if changed then
  redis.call('HSET', h, 's', s, 'n', n, 'k', k, 'u', fmt(u), 'po', po, 'pk', pk,
             'w', w, 'wf', wf, 'ts', ts, 'r', fmt(r))
  local keep = math.max(86400000000, u - now, r - now) + 60000000
  redis.call('PEXPIRE', h, string.format('%.0f', math.min(keep / 1000, 1e15)))
end
return {s, fmt(u - now), fmt(r - now), tat, result, before, delay}
""".replace("SLICES", str(SLICES))


@final
class Link:
    """One redis client for the breakers of one pool (and its function's circuit breaker).

    Args:
        name: the function or group, named in the outage WARNING and the INFO after it.
        client_factory: builds the sync client, once (short timeouts, no retries).
        explicit_time: run the script on the ``now`` each call passes (microseconds)
            instead of the server's ``TIME``: for tests of the rules only, since
            processes whose clocks differ would then disagree.
    """

    __slots__ = ("_client", "_cool", "_script", "down", "explicit_time", "lane", "name")

    def __init__(
        self,
        name: str,
        client_factory: Callable[[], redis.Redis],
        *,
        explicit_time: bool = False,
        retry_after: float = 0.5,
        max_retry_after: float = 5.0,
    ) -> None:
        self.name = name
        self.explicit_time = explicit_time
        #: True from a failed ask until redis answers again: the candidates use local state.
        self.down = False
        self._cool = CoolDown(retry_after, max_retry_after, lease=math.inf)
        self._client = client_factory()
        self._script = self._client.register_script(BREAKER)
        #: Where an async caller's round trips are made (``opero.core.lane``: why a thread).
        self.lane = Lane("redis")

    def ask(self, keys: list[str], args: list[str]) -> list[str] | None:
        """Run the script; None while redis rests after a failure or cannot be reached."""
        if not self._cool.available():
            return None
        try:
            raw: list[bytes | str] = self._script(keys=keys, args=args)
        except _UNAVAILABLE as error:
            self.down = True
            if self._cool.failed():
                # Only the error's type: its text can name the server, a URL a password.
                logger.warning(
                    "opero: shared breakers of %s unavailable (%s); using this process's "
                    "own breaker state and budgets until redis answers again",
                    self.name,
                    type(error).__name__,
                )
            return None
        except BaseException:
            self._cool.release()
            raise
        if self._cool.succeeded():
            self.down = False
            logger.info("opero: shared breakers of %s restored", self.name)
        # bytes, or str from a client made with decode_responses=True
        return [x.decode() if isinstance(x, bytes) else x for x in raw]

    def close(self) -> None:
        """Close the client's connections."""
        close_client(self._client)


def script_args(breaker: Breaker | None, rate: float | None, burst: int) -> list[str]:
    """ARGV[3:13] of the script: the breaker's settings and the budget's, in microseconds."""
    interval = 0.0 if rate is None else 1e6 / rate
    budget = [repr(interval), repr((burst - 1) * interval)]
    if breaker is None:
        return ["0", "", "1", "0", "1", "1", "1", "1", *budget]
    window = breaker.window_calls or DEFAULT_WINDOW_CALLS
    seconds = breaker.window_seconds
    return [
        str(breaker.failure_threshold or 0),
        "" if breaker.failure_ratio is None else repr(breaker.failure_ratio),
        str(window),
        "0" if seconds is None else repr(seconds / SLICES),
        str(breaker.minimum_calls if seconds is not None else min(breaker.minimum_calls, window)),
        repr(breaker.cooldown * 1e6),
        repr(min(breaker.max_cooldown, 1e300) * 1e6),
        str(breaker.half_open_calls),
        *budget,
    ]
