"""One call's cache step, written once for the sync and the async shell.

A call's lookup answers with the cached value (a hit, already counted, logged
and announced to a sync ``on_cache_hit``), else a ``Compute`` naming the key
to compute under single-flight, or ``UNCACHED`` when the call has no usable
key.  Its only I/O is the layer's own read, the in-process one for a memory
cache; ``afind`` is the same step for a store with an asyncio client (redis),
awaiting the read.  The shells then only call, await or wait on a flight, in a
few lines each (``opero.core.shell``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, final

from opero.core import events
from opero.core.sentinels import MISSING, NO_KEY

if TYPE_CHECKING:
    from opero.core.callbacks import Callback
    from opero.core.pipeline import Pipeline

__all__ = ["UNCACHED", "CacheStep", "Compute"]

DEBUG = logging.DEBUG
debug_enabled = logging.getLogger("opero").isEnabledFor


@final
class _Uncached:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCACHED"


#: ``find``'s answer for a call with no usable key: call the function without the cache.
UNCACHED: Final = _Uncached()


@final
class Compute:
    """A miss: the key to compute under single-flight, and the call that computes it.

    Calling it runs the layers below the cache once, counted as a miss; for an
    async function it returns the awaitable.
    """

    __slots__ = ("args", "key", "kwargs", "step")

    def __init__(
        self, step: CacheStep, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.step = step
        #: The key single-flight and the store use: hashable, never ``NO_KEY``.
        self.key = key
        self.args = args
        self.kwargs = kwargs

    def __call__(self) -> Any:
        next(self.step.misses)
        if events.on:
            from opero.core.watch import cache_lookup  # noqa: PLC0415 - listeners only

            cache_lookup(self.step.pipeline, hit=False)
        return self.step.inner(*self.args, **self.kwargs)


@final
class CacheStep:
    """The cache layer's part of one decorated function's calls, built once at decoration.

    Hits are counted, logged at DEBUG and announced to a sync ``on_cache_hit``
    here; an async ``on_cache_hit`` (``late``) is awaited by the async shell
    and by the async single-flight, which are the only places that can.
    """

    __slots__ = (
        "announce",
        "flights",
        "hits",
        "inner",
        "key_of",
        "late",
        "layer",
        "misses",
        "peek",
        "pipeline",
        "read",
    )

    def __init__(self, p: Pipeline, inner: Callable[..., Any]) -> None:
        layer = p.cache
        if layer is None:
            msg = "CacheStep needs a pipeline with a cache"
            raise ValueError(msg)
        self.pipeline = p
        #: The layers below the cache (rate limit, retries, the function).
        self.inner = inner
        self.layer = layer
        self.key_of = layer.key
        #: The layer's hot read, which may raise (then ``read``, which never does).
        self.peek = layer.peek
        self.read = layer.get
        self.flights = p.flights
        self.hits, self.misses = p.counters.cache_hits, p.counters.cache_misses
        on_hit: Callback | None = p.callbacks.on_cache_hit
        late = on_hit is not None and on_hit.is_async
        self.announce: Callable[[], Any] | None = on_hit.fire if on_hit and not late else None
        self.late: Callback | None = on_hit if late else None

    def __reduce__(self) -> tuple[Any, ...]:
        # Built again from its pipeline, which pickles as a rebuild (see Pipeline.__reduce__).
        return (CacheStep, (self.pipeline, self.inner))

    def finder(
        self, miss: Callable[[Hashable, tuple[Any, ...], dict[str, Any]], Any]
    ) -> Callable[..., Any]:
        """``find(*args, **kwargs)``: the cached value of a call (a hit, counted), else ``miss``'s.

        ``miss(key, args, kwargs)`` is given the calls the cache did not answer:
        the sync shell's computes them, so its ``find`` is its whole wrapper (a
        hit costs no frame of its own); :meth:`miss` turns them into a
        ``Compute`` or ``UNCACHED`` for the async shell.
        """
        key_of, peek, read, hits = self.key_of, self.peek, self.read, self.hits
        announce, noted = self.announce, self.noted

        def find(*args: Any, **kwargs: Any) -> Any:
            key = key_of(args, kwargs)
            try:
                value = peek(key)
            except Exception:  # an unhashable key or a failing backend: the careful read
                value = read(key)
            if value is MISSING:
                return miss(key, args, kwargs)
            next(hits)
            if announce is None and not events.on and not debug_enabled(DEBUG):
                return value
            return noted(value)

        return find

    async def afind(self, *args: Any, **kwargs: Any) -> Any:
        """The async shell's ``find`` for a store read through its asyncio client."""
        key = self.key_of(args, kwargs)
        value = await self.layer.aget(key)
        return self.miss(key, args, kwargs) if value is MISSING else self.hit(value)

    def miss(self, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """What to do about a call the cache did not answer: a ``Compute``, or ``UNCACHED``."""
        key = self.layer.hashable(key)
        return UNCACHED if key is NO_KEY else Compute(self, key, args, kwargs)

    def hit(self, value: Any) -> Any:
        """Count, log and announce (to a sync ``on_cache_hit``) a value the cache gave."""
        next(self.hits)
        return self.noted(value)

    def noted(self, value: Any) -> Any:
        """Log a hit at DEBUG and announce it to a sync ``on_cache_hit``; ``value`` back."""
        if debug_enabled(DEBUG):
            self.pipeline.log_hit()
        if events.on:
            from opero.core.watch import cache_lookup  # noqa: PLC0415 - listeners only

            cache_lookup(self.pipeline, hit=True)
        if self.announce is not None:
            self.announce()
        return value

    async def ahit(self, value: Any) -> Any:
        """:meth:`hit`, then await an async ``on_cache_hit``."""
        self.hit(value)
        if self.late is not None:
            await self.late.fire_async()
        return value
