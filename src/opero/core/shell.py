"""The sync and async shells: the only code that calls, sleeps and awaits.

Both shells run the same layers in the same order (cache, rate limit,
retry with fallback).  Each keeps only its fast paths: the first call of the
function, and a cache hit.  Everything after a first failure is one I/O-free
engine (:mod:`opero.core.flow`) that both drive.  The sync shell never
touches an event loop; the async shell never blocks one.  Work that depends
only on the configuration is bound into closures here, at decoration time;
the success path of a call is one ``try`` around the function.

Pickling: a decorated function shipped by value (cloudpickle, distributed)
carries its closures.  So they hold ``p`` (which pickles as "rebuild from the
function and its settings", see ``Pipeline.__reduce__``), stateless values,
and on the hot path parts of ``p`` that pickle as that same part of the
rebuilt pipeline (counters, the cache and its ``get``; see
``opero.core.owned``).  The rest of the live state (limiter, flights) is read
through ``p``, so an unpickled function gets one consistent fresh state.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, cast, final

from opero.core.cache import MISSING
from opero.core.flow import Wait, adrive, drive, recover
from opero.core.pipeline import Pipeline

if TYPE_CHECKING:
    from opero.core.single_flight import AsyncSingleFlight, SingleFlight

__all__ = ["Shell", "build_async", "build_sync", "worker_shell"]

DEBUG = logging.DEBUG
debug_enabled = logging.getLogger("opero").isEnabledFor


@final
class Shell:
    """One decorated function's calls, as the map engine uses them.

    ``call`` is the whole decorated call.  For a sync function whose success
    needs nothing but the function itself (no cache, rate limit, fallback or
    ``on_success``: a process map keeps cache and rate limit in its parent, so
    its workers qualify), ``direct`` is the plain
    function and ``resume(error, args, kwargs)`` continues the same failure path
    after ``direct`` raised, so a map's successful items cost one plain call
    each; otherwise both are None.  ``tally`` reads the counts a chunk's items
    add (``Counters.tally``), which workers send back to the parent.
    """

    __slots__ = ("call", "direct", "is_async", "pipeline", "resume", "tally")

    def __init__(self, p: Pipeline) -> None:
        self.pipeline = p
        self.is_async = p.is_async
        self.call: Callable[..., Any] = build_async(p) if p.is_async else build_sync(p)
        self.tally = p.counters.tally
        plain = not p.is_async and p.callbacks.on_success is None and p.layers == ("retry",)
        self.direct: Callable[..., Any] | None = p.func if plain else None
        self.resume: Callable[[BaseException, tuple[Any, ...], dict[str, Any]], Any] | None = (
            _resumer(p) if plain else None
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Built again from its pipeline, which pickles as a rebuild (see Pipeline.__reduce__).
        return (Shell, (self.pipeline,))


def _resumer(p: Pipeline) -> Callable[[BaseException, tuple[Any, ...], dict[str, Any]], Any]:
    fn, entries = p.func, p.counters.entries

    def resume(error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        next(entries)
        return drive(recover(p, args, kwargs, None, error), fn)

    return resume


def worker_shell(
    factory: Callable[[Callable[..., Any], Mapping[str, Any]], Pipeline],
    func: Callable[..., Any],
    config: Mapping[str, Any],
) -> Shell:
    """Run in a map's worker: ``func``'s per-item pipeline, built there from its settings."""
    return Shell(factory(func, config))


def build_sync(p: Pipeline) -> Callable[..., Any]:
    """The call function of a sync decorated function."""
    fn, cache, has_fallback = p.func, p.cache, p.fallback is not None
    on_success, on_hit = p.callbacks.on_success, p.callbacks.on_cache_hit
    entries, misses, hits = p.counters.entries, p.counters.cache_misses, p.counters.cache_hits

    def attempts(*args: Any, **kwargs: Any) -> Any:
        next(entries)
        call_args, call_kwargs, candidates = (
            p.first_call(args, kwargs) if has_fallback else (args, kwargs, None)
        )
        try:
            result = fn(*call_args, **call_kwargs)
        except BaseException as exc:
            error = exc
        else:
            if on_success is not None:
                on_success.fire(result)
            return result
        return drive(recover(p, args, kwargs, candidates, error), fn)

    def limited(*args: Any, **kwargs: Any) -> Any:
        try:
            delay = p.reserve(args, kwargs)
            if delay > 0:
                Wait(delay, p.counters).sleep()
        except BaseException:
            next(p.counters.unserved)
            raise
        return attempts(*args, **kwargs)

    inner = limited if p.limiter is not None else attempts
    if cache is None:
        # Without a limiter this is the whole wrapper: one try around the call.
        return inner

    key_of, read, safe_read = cache.key, cache.read, cache.get

    def call(*args: Any, **kwargs: Any) -> Any:
        key: Hashable = key_of(args, kwargs)
        if key is MISSING:
            return inner(*args, **kwargs)
        try:
            value = read(key)
        except Exception:  # unhashable key or a failing backend: the careful path
            value = safe_read(key)
        if value is MISSING:
            key = cache.hashable(key)
            if key is MISSING:
                return inner(*args, **kwargs)

            def compute() -> Any:
                next(misses)
                return inner(*args, **kwargs)

            flights = cast("SingleFlight", p.flights)
            computed, value = flights.run(cache, key, compute)
            if computed:
                return value
        next(hits)
        if debug_enabled(DEBUG):
            p.log_hit()
        if on_hit is not None:
            on_hit.fire()
        return value

    return call


def build_async(p: Pipeline) -> Callable[..., Awaitable[Any]]:
    """The call function of an async decorated function (a coroutine function)."""
    fn, cache, has_fallback = p.func, p.cache, p.fallback is not None
    on_success, on_hit = p.callbacks.on_success, p.callbacks.on_cache_hit
    entries, misses, hits = p.counters.entries, p.counters.cache_misses, p.counters.cache_hits

    async def attempts(*args: Any, **kwargs: Any) -> Any:
        next(entries)
        call_args, call_kwargs, candidates = (
            p.first_call(args, kwargs) if has_fallback else (args, kwargs, None)
        )
        try:
            result = await fn(*call_args, **call_kwargs)
        except BaseException as exc:
            error = exc
        else:
            if on_success is not None:
                await on_success.fire_async(result)
            return result
        return await adrive(recover(p, args, kwargs, candidates, error), fn)

    async def limited(*args: Any, **kwargs: Any) -> Any:
        try:
            delay = await p.areserve(args, kwargs)
            if delay > 0:
                await Wait(delay, p.counters).asleep()
        except BaseException:
            next(p.counters.unserved)
            raise
        return await attempts(*args, **kwargs)

    inner = limited if p.limiter is not None else attempts
    if cache is None:
        return inner

    key_of, read, safe_read = cache.key, cache.read, cache.get
    async_store = cache.is_async

    async def call(*args: Any, **kwargs: Any) -> Any:
        key: Hashable = key_of(args, kwargs)
        if key is MISSING:
            return await inner(*args, **kwargs)
        if async_store:
            value = await cache.aget(key)
        else:
            try:
                value = read(key)
            except Exception:  # unhashable key or a failing backend: the careful path
                value = safe_read(key)
        if value is MISSING:
            key = cache.hashable(key)
            if key is MISSING:
                return await inner(*args, **kwargs)

            def compute() -> Awaitable[Any]:
                next(misses)
                return inner(*args, **kwargs)

            flights = cast("AsyncSingleFlight", p.flights)
            computed, value = await flights.run(cache, key, compute)
            if computed:
                return value
        next(hits)
        if debug_enabled(DEBUG):
            p.log_hit()
        if on_hit is not None:
            await on_hit.fire_async()
        return value

    return call
