"""A process or Dask map's rate limit, held where the map is submitted, for every attempt.

Why the workers call back to the parent (design (b) of issue 13), and not the
parent driving each failing item's engine (design (a)): a server's ``Retry-After``
must hold the items *already sent* to workers, which only the workers can do,
and a retry's slot must be taken when the retry starts, which is after a backoff
only the worker sees.  So a worker's pipeline gets a stand-in limiter,
`RemoteLimit`: it books every retry and fallback candidate (none with
``rate_limit_per="call"``) and every pause with the parent's own limiter through
a `ScopeServer`, a thread of the parent that answers over a unix socket
(``multiprocessing.connection``, with a random key).  An item's first attempt
keeps the slot the parent booked before sending it (so a waiting item holds no
worker), and waits only for a pause begun since, which every pause also writes
to the map's shared-memory cell (``pause_cell.py``); an item that starts late
(it waited for a busy worker, ``map_link.LATE``) books a fresh slot instead, so
every start happens at a slot booked for it.  The one engine
(``flow.recover``) still decides everything in the worker: the stand-in only
answers "how long to wait" as the limiter would.  A round trip costs some
100 us, paid by retries of rate-limited maps only.

The same server answers a map's key pool and ``circuit_breaker=``, which the parent
holds too (``pool_link.py``): one `Channel` per worker pipeline carries the limiter's
and the pool's requests.  A worker that cannot reach the parent (a Dask worker on
another host) falls back to a limiter, pool and breaker of its own with the same
settings (one WARNING): never unlimited.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from multiprocessing.connection import Connection, Listener

    from opero.core.breaker_state import BreakerState
    from opero.core.candidates import Pool
    from opero.core.gate import SharedPause
    from opero.core.pipeline import Pipeline
    from opero.core.rate_limit import Limiter

__all__ = ["Channel", "RemoteLimit", "ScopeServer", "linked_pipeline"]

logger = logging.getLogger("opero")

#: Where a worker finds the parent's limiter: ``(socket path, key)``.
Address = tuple[str, bytes]


@final
class ScopeServer:
    """Answers the workers' bookings and pauses with the parent's own limiter (a thread)."""

    __slots__ = ("_listener", "address", "pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        from multiprocessing.connection import Listener  # noqa: PLC0415

        key = secrets.token_bytes(16)
        self.pipeline = pipeline
        self._listener: Listener = Listener(family="AF_UNIX", authkey=key)
        #: What a worker is sent to reach this server.
        self.address: Address = (str(self._listener.address), key)
        threading.Thread(target=self._accept, name="opero-scope", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection = self._listener.accept()
            except OSError:  # the listener is gone (interpreter exit)
                return
            except Exception:  # noqa: S112 - a client that failed the handshake: not ours
                continue
            threading.Thread(
                target=self._serve, args=(connection,), name="opero-scope-worker", daemon=True
            ).start()

    def _serve(self, connection: Connection) -> None:
        from opero.concurrency.pool_parent import Held  # noqa: PLC0415

        pipeline = self.pipeline
        held = Held(pipeline)  # this worker's candidates taken and not yet settled
        with connection:
            try:
                while True:
                    try:
                        request = connection.recv()
                    except (EOFError, OSError):
                        return
                    if request[0] == "reserve":
                        answer: Any = pipeline.reserve(request[1], request[2])
                    elif request[0] == "pause":
                        pipeline.pause(request[1])
                        answer = True
                    else:  # "pool" or "circuit": the key pool and breaker (pool_link.py)
                        answer = held.answer(request)
                    connection.send(answer)
            finally:
                held.drop()  # a worker that died gives back what it held


@final
class Channel:
    """A worker pipeline's one connection to its map's parent (limit, key pool, breaker).

    ``address`` is set for each chunk (``map_link.attach``).  `ask` answers None when
    there is no parent to ask: no link, or one this process cannot reach (a Dask
    worker on another host), which is tried once and logged once at WARNING; the
    caller then keeps the same settings on its own, never unlimited.  The lock serves
    an async chunk, whose tasks ask from the loop and from helper threads.
    """

    __slots__ = ("_connection", "_lock", "_unreachable", "address")

    def __init__(self) -> None:
        #: The parent's server for the chunk now running, or None.
        self.address: Address | None = None
        self._connection: tuple[Address, Connection] | None = None
        self._unreachable: Address | None = None
        self._lock = threading.Lock()

    def ask(self, request: tuple[Any, ...]) -> Any:
        """The parent's answer to ``request``, or None when it cannot be asked."""
        address = self.address
        if address is None or address == self._unreachable:
            return None
        with self._lock:
            held = self._connection
            if held is None or held[0] != address:
                if held is not None:
                    held[1].close()
                    self._connection = None
                from multiprocessing.connection import Client  # noqa: PLC0415

                try:
                    held = (address, Client(address[0], family="AF_UNIX", authkey=address[1]))
                except OSError:
                    self._unreachable = address
                    logger.warning(
                        "opero: this worker cannot reach its map's parent (another host?); "
                        "it keeps the rate limit, key pool and circuit breaker on its own"
                    )
                    return None
                self._connection = held
            held[1].send(request)
            return held[1].recv()


@final
class RemoteLimit:
    """A worker's stand-in for the map's limiter: asks the parent (see the module's note).

    Each worker pipeline has its own, used by one chunk at a time.
    """

    __slots__ = (
        "_fallback",
        "burst",
        "cell",
        "channel",
        "per_args",
        "prepaid",
        "rate",
    )

    def __init__(self, rate: float, burst: int, *, per_args: bool, channel: Channel) -> None:
        self.rate = rate
        self.burst = burst
        #: The parent's limiter is one per argument set: bookings carry the arguments.
        self.per_args = per_args
        #: How this worker reaches the parent (shared with the pipeline's key pool).
        self.channel = channel
        #: The map's pause, shared in memory: what a prepaid first attempt waits for.
        self.cell: SharedPause | None = None
        #: The next booking is the chunk's first attempt, which the parent booked when it
        #: sent the chunk (a rate-limited map sends one item per chunk), and it is on time.
        self.prepaid = False
        self._fallback: Limiter | None = None

    def _local(self) -> Limiter:
        if self._fallback is None:
            from opero.core.rate_limit import Limiter  # noqa: PLC0415

            self._fallback = Limiter(self.rate, self.burst)
        return self._fallback

    def reserve_for(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> float:
        """Book a start with the parent's limiter; the seconds to wait for it.

        The item's first attempt was booked by the parent: it waits only for a
        pause that began since, read from the shared cell (no round trip).
        """
        if self.prepaid:
            self.prepaid = False
            until = self.cell.read() if self.cell is not None else 0.0
            return until - now if until > now else 0.0
        request = ("reserve", args, kwargs) if self.per_args else ("reserve", (), {})
        answer = self.channel.ask(request)
        return self._local().reserve(now) if answer is None else float(answer)

    async def areserve_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float
    ) -> float:
        """:meth:`reserve_for` from a helper thread, so the worker's loop runs on."""
        import asyncio  # noqa: PLC0415

        return await asyncio.to_thread(self.reserve_for, args, kwargs, now)

    def pause_for(self, seconds: float, now: float) -> None:
        """Pause the parent's limiter: no start booked afterwards, anywhere, comes sooner.

        The shared cell holds the first attempts already sent (see `reserve_for`).
        """
        if self.cell is not None:
            self.cell.push(now + seconds)
        self._pause_parent(seconds, now)

    async def apause_for(self, seconds: float, now: float) -> None:
        """:meth:`pause_for`, the round trip from a helper thread.

        The cell is written first, in this task: it is a shared-memory write, and
        every first attempt already sent reads it, so the pause must be there
        before the loop lets another task (or worker) start a call.  Writing it
        from the helper thread left a gap of a thread start (tens of ms under load).
        """
        import asyncio  # noqa: PLC0415

        if self.cell is not None:
            self.cell.push(now + seconds)
        await asyncio.to_thread(self._pause_parent, seconds, now)

    def _pause_parent(self, seconds: float, now: float) -> None:
        if self.channel.ask(("pause", seconds)) is None:
            self._local().pause_for(seconds, now)


def linked_pipeline(
    factory: Callable[[Callable[..., Any], Mapping[str, Any]], Pipeline],
    func: Callable[..., Any],
    config: Mapping[str, Any],
) -> Pipeline:
    """A worker's pipeline: ``config`` without cache and rate limit, with stand-ins that ask
    the parent (one `Channel`): a `RemoteLimit` in the limiter's place when ``config`` has
    a rate limit, and the key pool and circuit breaker of ``pool_link.py``."""
    from opero.concurrency.pool_link import remote_circuit, remote_pool  # noqa: PLC0415
    from opero.core.pipeline import Pipeline  # noqa: PLC0415

    p = factory(func, {**config, "cache": False, "rate_limit": None})
    channel = Channel()
    pool: Pool | None = remote_pool(p, config, channel)
    circuit: BreakerState | None = remote_circuit(p, config, channel)
    if config["rate_limit"] is None and pool is p.pool and circuit is p.circuit:
        return p
    remote = None
    if config["rate_limit"] is not None:
        remote = RemoteLimit(
            config["rate_limit"],
            config["rate_limit_burst"],
            per_args=config["rate_limit_scope"] == "per_args",
            channel=channel,
        )
    return Pipeline(
        p.func,
        p.name,
        p.retry,
        limiter=remote,
        fallback=p.fallback,
        callbacks=p.callbacks,
        config=p.config,
        is_async=p.is_async,
        factory=p.factory,
        routing=p.routing,
        deadline=p.deadline,
        attempt_timeout=p.attempt_timeout,
        per_attempt=p.per_attempt,
        pool=pool,
        circuit=circuit,
    )
