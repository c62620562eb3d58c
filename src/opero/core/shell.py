"""The sync and async shells: the only code that calls, sleeps and awaits.

Both shells run the same layers in the same order (cache, rate limit,
retry with fallback).  Each keeps only its fast paths: the first call of the
function, and a cache hit.  The cache's part is one step both drive
(:mod:`opero.core.cache_step`: the cached value, a key to compute, or no key),
and everything after a first failure is one I/O-free engine
(:mod:`opero.core.flow`) that both drive.  The sync shell never
touches an event loop; the async shell never blocks one.  Work that depends
only on the configuration is bound into closures here, at decoration time;
the success path of a call is one ``try`` around the function.

Pickling: a decorated function shipped by value (cloudpickle, distributed)
carries its closures.  So they hold ``p`` (which pickles as "rebuild from the
function and its settings", see ``Pipeline.__reduce__``), stateless values,
and on the hot path parts of ``p`` that pickle as that same part of the
rebuilt pipeline (counters, the cache and its ``get``; see
``opero.core.owned``; the cache step pickles as a rebuild from ``p``).  The
rest of the live state (limiter, flights) is read through ``p`` or the step, so
an unpickled function gets one consistent fresh state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, cast, final

from opero.core.cache_step import UNCACHED, CacheStep, Compute
from opero.core.drivers import ahold, hold, whole_async, whole_sync
from opero.core.flow import Wait, adrive, drive, recover
from opero.core.pipeline import Pipeline

if TYPE_CHECKING:
    from opero.core.single_flight import AsyncSingleFlight, SingleFlight

__all__ = ["Shell", "build_async", "build_sync", "worker_shell"]


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
        plain = (
            not p.is_async
            and p.callbacks.on_success is None
            and p.layers == ("retry",)
            and not p.engine
        )
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
    fn, has_fallback, on_success = p.func, p.fallback is not None, p.callbacks.on_success
    entries, gate = p.counters.entries, p.gate

    def attempts(*args: Any, **kwargs: Any) -> Any:
        if gate.until:  # a server's Retry-After pauses the function (it has no rate limit)
            hold(p)
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

    # A deadline, an attempt timeout or a result check: the whole call runs in the engine.
    inner = whole_sync(p) if p.engine else limited if p.limiter is not None else attempts
    # Without a cache (and a limiter) this is the whole wrapper: one try around the call.
    return inner if p.cache is None else _cached_sync(CacheStep(p, inner))


def _cached_sync(step: CacheStep) -> Callable[..., Any]:
    """The sync driver of the cache step: a hit returns at once, a miss runs under single-flight."""

    def computed(key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        found = step.miss(key, args, kwargs)
        if found is UNCACHED:
            return step.inner(*args, **kwargs)
        return cast("SingleFlight", step.flights).run(found)  # flights: see the module's note

    return step.finder(computed)  # the whole wrapper: a hit costs no frame of its own


def build_async(p: Pipeline) -> Callable[..., Awaitable[Any]]:
    """The call function of an async decorated function (a coroutine function)."""
    fn, has_fallback, on_success = p.func, p.fallback is not None, p.callbacks.on_success
    entries, gate = p.counters.entries, p.gate

    async def attempts(*args: Any, **kwargs: Any) -> Any:
        if gate.until:  # a server's Retry-After pauses the function (it has no rate limit)
            await ahold(p)
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

    inner = whole_async(p) if p.engine else limited if p.limiter is not None else attempts
    return inner if p.cache is None else _cached_async(CacheStep(p, inner))


def _cached_async(step: CacheStep) -> Callable[..., Awaitable[Any]]:
    """The async driver of the cache step: awaits a store's read, a flight, an async callback."""
    afind = step.afind if step.layer.is_async else None
    find, inner, late = step.finder(step.miss), step.inner, step.late

    async def call(*args: Any, **kwargs: Any) -> Any:
        found = find(*args, **kwargs) if afind is None else await afind(*args, **kwargs)
        if found.__class__ is Compute:
            return await cast("AsyncSingleFlight", step.flights).run(found)
        if found is UNCACHED:
            return await inner(*args, **kwargs)
        if late is not None:
            await late.fire_async()
        return found

    return call
