"""The sync and async shells: the only code that calls, sleeps and awaits.

Both shells run the same layers in the same order (cache, rate limit,
retry with fallback) and leave every decision to the policies in
``Pipeline`` and ``Run``.  The sync shell never touches an event loop; the
async shell never blocks one.  Work that depends only on the configuration is
bound into closures here, at decoration time; the success path of a call is
one ``try`` around the function.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, cast

from opero.core import clock
from opero.core.cache import MISSING
from opero.core.pipeline import Pipeline, Run

if TYPE_CHECKING:
    from opero.core.single_flight import AsyncSingleFlight, SingleFlight

__all__ = ["build_async", "build_sync"]

DEBUG = logging.DEBUG
debug_enabled = logging.getLogger("opero").isEnabledFor


def is_call_error(error: BaseException) -> bool:
    """A TypeError raised by the call itself (arguments that do not fit), not inside the function.

    Such a call can never succeed, so it is not retried.  The traceback tells:
    it stops at the shell's own frame instead of reaching into the function.
    """
    tb = error.__traceback__
    return type(error) is TypeError and tb is not None and tb.tb_next is None


def never_retried(error: BaseException) -> bool:
    """Ctrl-C, ``sys.exit``, a closed generator or a cancelled task: never retried or wrapped.

    ``retry_on=BaseException`` would catch them; retrying one would make an
    ``except Exception`` around the call swallow an interrupt.
    """
    if isinstance(error, Exception):
        return False
    if isinstance(error, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return True
    asyncio = sys.modules.get("asyncio")  # a cancelled task implies asyncio is loaded
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


def refused(error: BaseException) -> bool:
    """An error ``retry_on`` matched that must still not be retried (see the two checks)."""
    return is_call_error(error) or never_retried(error)


# Pickling: a decorated function shipped by value (cloudpickle, distributed) carries
# its closures.  So they hold ``p`` (which pickles as "rebuild from the function and
# its settings", see ``Pipeline.__reduce__``), stateless values, and on the hot path
# parts of ``p`` that pickle as that same part of the rebuilt pipeline (counters,
# the cache and its ``get``; see ``opero.core.owned``).  Everything else of the live
# state (limiter, flights) is read through ``p``, so an unpickled function gets one
# consistent fresh state.


def build_sync(p: Pipeline) -> Callable[..., Any]:
    """The call function of a sync decorated function."""
    fn = p.func
    retry_on = p.retry.retry_on
    cache, has_limiter = p.cache, p.limiter is not None
    has_fallback = p.fallback is not None
    cb = p.callbacks
    on_success, on_failure, on_retry, on_hit = (
        cb.on_success,
        cb.on_failure,
        cb.on_retry,
        cb.on_cache_hit,
    )
    entries, misses, hits = p.counters.entries, p.counters.cache_misses, p.counters.cache_hits

    def failed(error: BaseException) -> None:
        p.non_retryable(error)
        if on_failure is not None:
            on_failure.fire(error)

    def pause(delay: float) -> None:
        since = clock.now()
        try:
            clock.sleep(delay)
        except BaseException:
            p.counters.waited_for(delay, since)
            raise
        p.counters.add_wait(delay)

    def recover(run: Run, error: BaseException) -> Any:
        while True:
            delay = run.failed(error)
            if delay is None:
                failure = run.give_up()
                if on_failure is not None:
                    on_failure.fire(failure)
                raise failure from error
            if run.index == 0 and on_retry is not None:
                on_retry.fire(error, run.attempt - 1)
            if delay:
                pause(delay)
            args, kwargs = run.call_args()
            try:
                return fn(*args, **kwargs)
            except retry_on as exc:
                if refused(exc):
                    if not never_retried(exc):
                        failed(exc)
                    raise
                error = exc
            except Exception as exc:
                failed(exc)
                raise

    def attempts(*args: Any, **kwargs: Any) -> Any:
        next(entries)
        call_args, call_kwargs, candidates = (
            p.first_call(args, kwargs) if has_fallback else (args, kwargs, None)
        )
        try:
            result = fn(*call_args, **call_kwargs)
        except retry_on as exc:
            if refused(exc):
                if not never_retried(exc):
                    failed(exc)
                raise
            error: BaseException = exc
        except Exception as exc:
            failed(exc)
            raise
        else:
            if on_success is not None:
                on_success.fire(result)
            return result
        result = recover(Run(p, args, kwargs, candidates), error)
        if on_success is not None:
            on_success.fire(result)
        return result

    def limited(*args: Any, **kwargs: Any) -> Any:
        try:
            delay = p.reserve(args, kwargs)
            if delay > 0:
                pause(delay)
        except BaseException:
            next(p.counters.unserved)
            raise
        return attempts(*args, **kwargs)

    if not has_fallback and on_success is None:
        # For @opmap's process workers: call ``fn`` directly, and only on an error
        # continue the same retry loop here (the success path then costs one call).
        def resume(error: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            next(entries)
            if not isinstance(error, retry_on) or refused(error):
                if not never_retried(error):
                    failed(error)
                raise error
            return recover(Run(p, args, kwargs, None), error)

        attempts._opero_direct = fn  # type: ignore[attr-defined]
        attempts._opero_resume = resume  # type: ignore[attr-defined]

    inner = limited if has_limiter else attempts
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
    fn = p.func
    retry_on = p.retry.retry_on
    cache, has_limiter = p.cache, p.limiter is not None
    has_fallback = p.fallback is not None
    cb = p.callbacks
    on_success, on_failure, on_retry, on_hit = (
        cb.on_success,
        cb.on_failure,
        cb.on_retry,
        cb.on_cache_hit,
    )
    entries, misses, hits = p.counters.entries, p.counters.cache_misses, p.counters.cache_hits

    async def failed(error: BaseException) -> None:
        p.non_retryable(error)
        if on_failure is not None:
            await on_failure.fire_async(error)

    async def pause(delay: float) -> None:
        since = clock.now()
        try:
            await clock.async_sleep(delay)
        except BaseException:
            p.counters.waited_for(delay, since)
            raise
        p.counters.add_wait(delay)

    async def recover(run: Run, error: BaseException) -> Any:
        while True:
            delay = run.failed(error)
            if delay is None:
                failure = run.give_up()
                if on_failure is not None:
                    await on_failure.fire_async(failure)
                raise failure from error
            if run.index == 0 and on_retry is not None:
                await on_retry.fire_async(error, run.attempt - 1)
            if delay:
                await pause(delay)
            args, kwargs = run.call_args()
            try:
                return await fn(*args, **kwargs)
            except retry_on as exc:
                if refused(exc):
                    if not never_retried(exc):
                        await failed(exc)
                    raise
                error = exc
            except Exception as exc:
                await failed(exc)
                raise

    async def attempts(*args: Any, **kwargs: Any) -> Any:
        next(entries)
        call_args, call_kwargs, candidates = (
            p.first_call(args, kwargs) if has_fallback else (args, kwargs, None)
        )
        try:
            result = await fn(*call_args, **call_kwargs)
        except retry_on as exc:
            if refused(exc):
                if not never_retried(exc):
                    await failed(exc)
                raise
            error: BaseException = exc
        except Exception as exc:
            await failed(exc)
            raise
        else:
            if on_success is not None:
                await on_success.fire_async(result)
            return result
        result = await recover(Run(p, args, kwargs, candidates), error)
        if on_success is not None:
            await on_success.fire_async(result)
        return result

    async def limited(*args: Any, **kwargs: Any) -> Any:
        try:
            delay = await p.areserve(args, kwargs)
            if delay > 0:
                await pause(delay)
        except BaseException:
            next(p.counters.unserved)
            raise
        return await attempts(*args, **kwargs)

    inner = limited if has_limiter else attempts
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
