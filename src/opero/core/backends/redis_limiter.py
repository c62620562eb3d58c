"""Rate limits shared by every process and host that uses one redis server.

The schedule is the GCRA of :class:`opero.core.rate_limit.Limiter`, but its one
timestamp lives in redis and each reservation is one Lua script, run atomically
on the server with the server's own ``TIME``: hosts whose clocks disagree still
agree on the schedule, and two callers never get the same slot.  A pause (a
server's Retry-After, :meth:`RedisLimiter.pause_for`) is the same script, so
every process sharing the scope sees it.

A limiter must never fail a call nor stop limiting, so while redis cannot be
reached each call falls back to an in-process :class:`Limiter` of the same rate
(the limit then holds per process).  After a failure redis rests for a
cool-down (:class:`~opero.core.backends.base.CoolDown`: ``retry_after``
seconds, doubling up to ``max_retry_after``), then one call at a time asks it
again, so a frozen server costs one call per cool-down its socket timeout; the
shared schedule resumes when it answers.

The in-process schedule also records every start the server hands this
process.  So when redis goes away it continues after the slots already booked,
and when redis comes back (perhaps empty, having forgotten every booking) a
shared start is never placed among the in-process starts still ahead: within
one process the rate holds across the outage and the recovery.

redis is an optional dependency, imported only when a shared limit is asked
for.  Needs Redis 5 or newer (a script that reads ``TIME`` before writing).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, final

import redis
import redis.asyncio
from redis.commands.core import AsyncScript

from opero.core import clock, forksafe, validate
from opero.core.backends.base import CoolDown
from opero.core.backends.redis_client import close_client
from opero.core.backends.redis_gcra import GCRA, LoopClient
from opero.core.owned import Owned
from opero.core.rate_limit import Limiter, pausing
from opero.exceptions import ConfigurationError

__all__ = ["RedisLimiter"]

logger = logging.getLogger("opero")

#: What "redis is unavailable" looks like: any redis error, a socket error, or
#: asyncio's timeout (not an OSError before Python 3.11).
_UNAVAILABLE: Final = (redis.RedisError, OSError, asyncio.TimeoutError)


@final
class RedisLimiter(Owned):
    """Even spacing at ``rate`` calls per second across every user of ``scope``.

    Same interface and schedule as :class:`~opero.core.rate_limit.Limiter`
    (``burst`` may start at once, then starts are ``1 / rate`` apart).  All
    limiters, in any process or host, with the same server, ``key_prefix`` and
    ``scope`` share one schedule, so they should all give the same rate.

    Args:
        rate: Calls per second (> 0).
        burst: Calls that may start at once (>= 1).
        scope: Names the shared schedule; the redis key is ``key_prefix + scope``.
        client_factory: Builds the sync client (called once, here).  Give it
            short timeouts and no retries: a call that finds the server frozen
            waits for them, one call per cool-down.
        async_client_factory: Builds one asyncio client per event loop.  Without
            it, :meth:`areserve_for` runs the sync client in a worker thread.
        key_prefix: Put before ``scope`` to form the key.
        retry_after: Seconds of the first cool-down after redis failed.
        max_retry_after: The longest cool-down, reached by doubling while redis
            keeps failing; in-process limiting lasts at most this long after
            redis is back.
    """

    __slots__ = (
        "_async_factory",
        "_client",
        "_cool",
        "_key",
        "_local",
        "_local_until",
        "_lock",
        "_loops",
        "_owner",
        "_script",
        "_script_args",
        "burst",
        "interval",
        "rate",
        "retry_after",
        "scope",
    )

    def __init__(
        self,
        rate: float,
        burst: int,
        scope: str,
        *,
        client_factory: Callable[[], redis.Redis],
        async_client_factory: Callable[[], redis.asyncio.Redis] | None = None,
        key_prefix: str = "opero:ratelimit:",
        retry_after: float = 0.5,
        max_retry_after: float = 5.0,
    ) -> None:
        #: This process's own schedule: every start it was given, and the one
        #: used while redis is unreachable.  It also validates rate and burst.
        self._local = Limiter(rate, burst)
        if not isinstance(scope, str) or not scope:
            msg = f"a shared rate limit needs a non-empty scope name, got {scope!r}"
            raise ConfigurationError(msg)
        least = validate.number("retry_after", retry_after)
        validate.number("max_retry_after", max_retry_after, minimum=least)
        self.rate = self._local.rate
        self.burst = self._local.burst
        #: Seconds between two starts.
        self.interval = self._local.interval
        self.scope = scope
        #: Seconds of the first cool-down after redis failed.
        self.retry_after = float(retry_after)
        # reserve_for and areserve_for report or release every probe they make, so no
        # lease is needed to let the next caller probe.
        self._cool = CoolDown(self.retry_after, float(max_retry_after), lease=math.inf)
        #: Until when starts handed out in-process lie ahead (-inf: none).
        self._local_until = -math.inf
        self._key = key_prefix + scope
        interval_us = self.interval * 1e6
        tolerance_us = (self.burst - 1) * interval_us
        self._script_args: tuple[str, str] = (repr(interval_us), repr(tolerance_us))
        self._client = client_factory()
        self._script = self._client.register_script(GCRA)
        self._async_factory = async_client_factory
        self._loops: dict[int, LoopClient] = {}
        self._lock = forksafe.lock()

    def reserve_for(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> float:
        """Claim the next shared start; return the seconds to wait for it.

        The limiter reads opero's clock itself once redis has answered (asking
        can take a while), so ``now`` is not used; the shared schedule runs on
        the server's clock.
        """
        return self._start(self._ask(self._script_args))

    async def areserve_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float
    ) -> float:
        """:meth:`reserve_for` without blocking the event loop."""
        if self._async_factory is None:
            return await asyncio.to_thread(self.reserve_for, args, kwargs, now)
        return self._start(await self._aask(self._async_factory, self._script_args))

    def pause_for(self, seconds: float, now: float) -> None:
        """Hold every process's next start on this scope until ``seconds`` from now.

        The pause is written into the shared schedule by the reservation script,
        on the server's clock (so ``now`` is not used).  This process's own
        schedule is paused too; while redis cannot be reached only that local
        pause holds, and a shared start redis gives once it answers again is
        still kept clear of it.
        """
        if pausing(seconds):
            answer = self._ask(self._pause_args(seconds))
            self._pause_here(seconds, shared=answer is not None)

    async def apause_for(self, seconds: float, now: float) -> None:
        """:meth:`pause_for` without blocking the event loop."""
        if self._async_factory is None:
            await asyncio.to_thread(self.pause_for, seconds, now)
        elif pausing(seconds):
            answer = await self._aask(self._async_factory, self._pause_args(seconds))
            self._pause_here(seconds, shared=answer is not None)

    def _ask(self, script_args: tuple[str, ...]) -> bytes | str | None:
        """Run the script on the sync client; None while redis rests or cannot be reached."""
        if self._cool.available():
            with self._asking():
                return self._script(keys=[self._key], args=script_args)  # type: ignore[no-any-return]
        return None

    async def _aask(
        self, factory: Callable[[], redis.asyncio.Redis], script_args: tuple[str, ...]
    ) -> bytes | str | None:
        """:meth:`_ask` on this loop's async client."""
        if self._cool.available():
            with self._asking():
                script = await self._script_for_running_loop(factory)
                return await script(keys=[self._key], args=script_args)  # type: ignore[no-any-return]
        return None

    @contextmanager
    def _asking(self) -> Iterator[None]:
        """What a failed ask of redis means, sync or async alike: redis unavailable rests it
        for a cool-down (the error is swallowed: the caller goes on in-process); any other
        error (a cancel, Ctrl-C) propagates and lets the next caller probe."""
        try:
            yield
        except _UNAVAILABLE as error:
            self._lost(error)
        except BaseException:
            self._cool.release()
            raise

    def _start(self, answer: bytes | str | None) -> float:
        """The wait for the start redis gave, or (no answer) for this process's own next one."""
        return self._own_start() if answer is None else self._shared_start(answer)

    def _pause_args(self, seconds: float) -> tuple[str, str, str]:
        return (*self._script_args, repr(seconds * 1e6))

    def _pause_here(self, seconds: float, *, shared: bool) -> None:
        """Pause this process's own schedule; unless redis has the pause, keep shared starts
        clear of it too (the check :meth:`_shared_start` makes for in-process starts)."""
        current = clock.now()
        self._local.pause_for(seconds, current)
        if shared:
            if self._cool.succeeded():
                logger.info("opero: shared rate limit %r restored", self.scope)
        else:
            self._local_until = max(self._local_until, current + seconds)

    def close(self) -> None:
        """Close the sync client's connections (async clients close with their loops)."""
        close_client(self._client)

    async def aclose(self) -> None:
        """Close the running loop's async client now rather than at loop shutdown."""
        with self._lock:
            entry = self._loops.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry.closer.aclose()

    async def _script_for_running_loop(
        self, factory: Callable[[], redis.asyncio.Redis]
    ) -> AsyncScript:
        """The script on this loop's client, made on the loop's first call.  Keyed by
        ``id(loop)`` and checked against the loop, as a closed loop's id can be reused."""
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is not None and entry.loop is loop:
            return entry.script
        with self._lock:
            # Clients of closed loops were closed at their shutdown; forget them.
            self._loops = {k: e for k, e in self._loops.items() if not e.loop.is_closed()}
            entry = self._loops[id(loop)] = LoopClient(loop, factory())
        # Runs to its first ``yield`` at once, which registers it with this loop.
        await entry.closer.asend(None)
        return entry.script

    def _shared_start(self, answer: bytes | str) -> float:
        """The wait for the start redis gave, recorded in this process's own schedule."""
        delay = float(answer) / 1e6
        current = clock.now()
        start = current + delay
        # Record the start, so that an outage continues after it.
        extra = self._local.reserve(start)
        if self._cool.succeeded():
            logger.info("opero: shared rate limit %r restored", self.scope)
        if start < self._local_until:
            # Starts handed out in-process are still ahead, and redis does not know
            # them (it may have restarted empty): this one must keep clear of them,
            # and so must the server's next starts, which follow its own (behind).
            self._local_until = max(self._local_until, start + extra + self.interval)
            return delay + extra
        return delay

    def _own_start(self) -> float:
        """The wait for the next start of this process's own schedule (redis unreachable)."""
        current = clock.now()
        wait = self._local.reserve(current)
        self._local_until = max(self._local_until, current + wait + self.interval)
        return wait

    def _lost(self, error: BaseException) -> None:
        """Cool down before asking redis again; warn once per outage."""
        if self._cool.failed():
            # Only the error's type: its text can name the server, and a URL can hold a password.
            logger.warning(
                "opero: shared rate limit %r unavailable (%s); "
                "limiting within this process until redis answers again",
                self.scope,
                type(error).__name__,
            )
