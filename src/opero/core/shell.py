"""The sync and async shells: a call's first attempt and a cache hit, sync or async.

Both shells run the same layers in the same order (cache, rate limit, retry with
fallback).  Each keeps only its fast paths: the first call of the function, and a
cache hit.  What the first call calls is built once (`_first_attempt`: the
function, cut at ``attempt_timeout``, with the first ``arg_fallback`` candidate in
place).  The cache's part is one step both drive (:mod:`opero.core.cache_step`:
the cached value, a key to compute, or no key), and everything after a first
failure is one I/O-free engine (:mod:`opero.core.flow`) that both drive.  The sync
shell never touches an event loop; the async shell never blocks one.  Work that
depends only on the configuration is bound into closures here, at decoration
time; the success path of a call is one ``try`` around the function.

Pickling: a decorated function shipped by value (cloudpickle, distributed)
carries its closures.  So they hold ``p`` (which pickles as "rebuild from the
function and its settings", see ``Pipeline.__reduce__``), stateless values,
and on the hot path parts of ``p`` that pickle as that same part of the rebuilt
pipeline (counters, the cache and its ``get``; see ``opero.core.owned``; the
cache step pickles as a rebuild from ``p``).  The rest of the live state (limiter,
flights) is read through ``p`` or the step: an unpickled function gets one consistent state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, cast, final

from opero.core import events
from opero.core.cache_step import UNCACHED, CacheStep, Compute
from opero.core.drivers import afirst_slot, first_slot, whole_async, whole_sync
from opero.core.flow import adrive, drive, recover
from opero.core.pipeline import Pipeline
from opero.core.pool_fast import done, quick_pick, resumed
from opero.core.watch import unspanned
from opero.instrumentation import detect

if TYPE_CHECKING:
    from opero.core.callbacks import Callback
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
        detect()  # OpenTelemetry on if a provider is set (opero.instrumentation)
        self.call: Callable[..., Any] = build_async(p) if p.is_async else build_sync(p)
        self.tally = p.counters.tally
        plain = (
            not p.is_async
            and p.callbacks.on_success is None
            and p.layers == ("retry",)
            and not p.engine
            and p.attempt_timeout is None
        )
        self.direct: Callable[..., Any] | None = p.func if plain else None
        self.resume: Callable[[BaseException, tuple[Any, ...], dict[str, Any]], Any] | None = (
            _resumer(p) if plain else None
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Built again from its pipeline, which pickles as a rebuild (see Pipeline.__reduce__).
        return (Shell, (self.pipeline,))


def _resumer(p: Pipeline) -> Callable[[BaseException, tuple[Any, ...], dict[str, Any]], Any]:
    entries = p.counters.entries

    def resume(error: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        next(entries)
        return drive(recover(p, args, kwargs, error))

    return resume


def worker_shell(
    factory: Callable[[Callable[..., Any], Mapping[str, Any]], Pipeline],
    func: Callable[..., Any],
    config: Mapping[str, Any],
) -> Shell:
    """Run in a map's worker: ``func``'s per-item pipeline, built there from its settings."""
    p = factory(func, config)
    unspanned(p)  # instrumentation: the map has one span (in the parent), items none
    return Shell(p)


def build_sync(p: Pipeline) -> Callable[..., Any]:
    """The call function of a sync decorated function."""
    call, entries, gate = _first_attempt(p), p.counters.entries, p.gate
    watched = whole_sync(p)  # while instrumentation listens: the engine reports the call

    def attempts(*args: Any, **kwargs: Any) -> Any:
        if events.on:
            return watched(*args, **kwargs)
        if gate.until:  # a server's Retry-After pauses the function (it has no rate limit)
            first_slot(p, args, kwargs)
        next(entries)
        try:  # without keywords, no empty dict is built for the call
            return call(*args, **kwargs) if kwargs else call(*args)
        except BaseException as exc:
            error = exc  # driven outside the handler: the engine's errors chain no context
        return drive(recover(p, args, kwargs, error))

    def limited(*args: Any, **kwargs: Any) -> Any:
        if events.on:
            return watched(*args, **kwargs)
        first_slot(p, args, kwargs)
        return attempts(*args, **kwargs)

    inner = _engine_sync(p) if p.engine else limited if p.limiter is not None else attempts
    # Without a cache (and a limiter) this is the whole wrapper: one try around the call.
    return inner if p.cache is None else _cached_sync(CacheStep(p, inner))


def _engine_sync(p: Pipeline) -> Callable[..., Any]:
    """A call the engine runs whole, but a key pool's healthy candidate is called here
    (`opero.core.pool_fast`); an error resumes the engine at that call, as ``attempts`` does."""
    whole, pick = whole_sync(p), quick_pick(p)
    if pick is None:
        return whole
    func, entries = p.func, p.counters.entries

    def pooled(*args: Any, **kwargs: Any) -> Any:
        if events.on:  # someone listens: the engine reports the call (opero.core.watch)
            return whole(*args, **kwargs)
        picked = pick(args, kwargs)
        if picked is None:
            return whole(*args, **kwargs)
        candidate, _, now, call_args, call_kwargs = picked
        next(entries)
        try:  # no empty keywords dict: 0.02 us less
            result = func(*call_args, **call_kwargs) if call_kwargs else func(*call_args)
        except BaseException as exc:
            error = exc  # driven outside the handler: the engine's errors chain no context
        else:
            done(candidate, now)  # the pick's time (None: done reads the clock)
            return result
        return drive(recover(p, args, kwargs, error, run=resumed(p, args, kwargs, picked)))

    return pooled


def _engine_async(p: Pipeline) -> Callable[..., Awaitable[Any]]:
    """`_engine_sync` for async functions."""
    whole, pick = whole_async(p), quick_pick(p)
    if pick is None:
        return whole
    func, entries = p.func, p.counters.entries

    async def pooled(*args: Any, **kwargs: Any) -> Any:
        if events.on:
            return await whole(*args, **kwargs)
        picked = pick(args, kwargs)
        if picked is None:
            return await whole(*args, **kwargs)
        candidate, _, now, call_args, call_kwargs = picked
        next(entries)
        try:
            result = await (func(*call_args, **call_kwargs) if call_kwargs else func(*call_args))
        except BaseException as exc:
            error = exc
        else:
            done(candidate, now)  # the pick's time (None: done reads the clock)
            return result
        return await adrive(recover(p, args, kwargs, error, run=resumed(p, args, kwargs, picked)))

    return pooled


def _first_attempt(p: Pipeline) -> Callable[..., Any]:
    """What a shell calls for a call's first attempt: the function itself, unless it is cut.

    With ``attempt_timeout`` it runs within it (the cut is all the first attempt
    needs, and the engine's generators would cost some 6 us a call); with
    ``arg_fallback``, with the first candidate in place (the engine reads the
    candidates again if it fails).  Sync or async alike: an async one returns the
    awaitable the shell awaits.
    """
    fn = call = p.func
    timeout = p.attempt_timeout
    if timeout is not None:
        from opero.core.timeouts import acall_within, call_within  # noqa: PLC0415 - timed only

        within: Callable[..., Any] = acall_within if p.is_async else call_within

        def timed(*args: Any, **kwargs: Any) -> Any:
            return within(fn, args, kwargs, timeout)

        call = timed
    on_success = p.callbacks.on_success
    if on_success is not None:
        call = _succeeding(call, on_success, is_async=p.is_async)
    fallback = p.fallback
    if fallback is None:
        return call
    inner, lead = call, fallback.lead  # bound: 0.04 us less

    def first(*args: Any, **kwargs: Any) -> Any:
        _, args, kwargs = lead(args, kwargs)
        return inner(*args, **kwargs) if kwargs else inner(*args)  # no empty dict: 0.02 us

    return first


def _succeeding(
    call: Callable[..., Any], on_success: Callback, *, is_async: bool
) -> Callable[..., Any]:
    """``call`` that fires ``on_success`` with its result (the first attempt's; the engine
    fires it for the later ones): one frame more, only for functions that set it."""
    if not is_async:

        def succeeded(*args: Any, **kwargs: Any) -> Any:
            result = call(*args, **kwargs)
            on_success.fire(result)
            return result

        return succeeded

    async def asucceeded(*args: Any, **kwargs: Any) -> Any:
        result = await call(*args, **kwargs)
        await on_success.fire_async(result)
        return result

    return asucceeded


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
    call, entries, gate = _first_attempt(p), p.counters.entries, p.gate
    watched = whole_async(p)

    async def attempts(*args: Any, **kwargs: Any) -> Any:
        if events.on:
            return await watched(*args, **kwargs)
        if gate.until:
            await afirst_slot(p, args, kwargs)
        next(entries)
        try:
            return await (call(*args, **kwargs) if kwargs else call(*args))
        except BaseException as exc:
            error = exc
        return await adrive(recover(p, args, kwargs, error))

    async def limited(*args: Any, **kwargs: Any) -> Any:
        if events.on:
            return await watched(*args, **kwargs)
        await afirst_slot(p, args, kwargs)
        return await attempts(*args, **kwargs)

    inner = _engine_async(p) if p.engine else limited if p.limiter is not None else attempts
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
