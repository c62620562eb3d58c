"""What ``@opmap`` returns: the map's plan, and ``f(items)``, ``f.imap``, ``f.imap_unordered``.

The plan is fixed at decoration time (``build_mapped``).  One set of
callables for sync maps (the map loop runs in the calling thread) and one for
async maps (``await f(items)``, ``async for``): tasks on the caller's loop, or
the sync loop run in a helper thread (``async_process``, and Dask with an
``async def`` function).  Each wrapper carries the map's plan, pipeline,
statistics and ``cache_clear``, as ``@opero`` functions do.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opero.concurrency.plan import REMOTE_MODES, MapPlan
from opero.concurrency.progress import Progress
from opero.core import clock, events
from opero.core.assemble import build_pipeline
from opero.core.shell import Shell, worker_shell
from opero.core.watch import map_ended, unspanned

if TYPE_CHECKING:
    import asyncio

__all__ = ["async_wrapper", "build_mapped", "sync_wrapper", "threaded"]


def build_mapped(
    func: Callable[..., Any],
    mode: str,
    options: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    is_async: bool,
) -> Any:
    """``func`` mapped in ``mode``: ``options`` are @opmap's own settings, ``config`` every
    @opero one (passed through as they are, so a new @opero setting needs no change here)."""
    plan = _plan(func, mode, options, config)
    ordered = options["ordered"]
    if mode == "async":
        from opero.concurrency.async_map import async_iterate  # noqa: PLC0415

        return async_wrapper(func, plan, ordered, async_iterate)
    if mode == "async_process" or (mode == "dask" and is_async):
        from opero.concurrency.dispatch import iterate  # noqa: PLC0415

        return async_wrapper(func, plan, ordered, threaded(iterate))
    return sync_wrapper(func, plan, ordered)


def _plan(
    func: Callable[..., Any], mode: str, options: Mapping[str, Any], config: Mapping[str, Any]
) -> MapPlan:
    """The map's frozen plan: its own settings, and the pipeline built from every @opero one."""
    from opero.concurrency.pool import default_start_method  # noqa: PLC0415
    from opero.concurrency.worker import WorkerSpec  # noqa: PLC0415

    process = mode in REMOTE_MODES
    timeout = options["timeout"]
    if timeout is not None:
        # CONTRACT 30: the map's timeout is each item's deadline, so the item's own engine
        # ends it in time with every error so far; the map's expiry stays for a hung attempt.
        deadline = config["deadline"]
        config = {**config, "deadline": timeout if deadline is None else min(deadline, timeout)}
    # One pipeline from every setting, in every mode: it validates them, holds the
    # statistics (process modes: the workers' counts are added to it) and is what
    # get_opero_info shows.  In process modes the parent keeps the cache and the
    # rate limit; the workers run the same settings without a cache.
    # The workers book every start and pause with the parent's limiter or pause, through
    # the map's link (map_link.py, scope_link.py).
    parent = build_pipeline(func, config)
    unspanned(parent)  # instrumentation: the map has one span, its items none
    link = None
    if process:
        from opero.concurrency.map_link import MapLink  # noqa: PLC0415
        from opero.concurrency.scope_link import linked_pipeline  # noqa: PLC0415

        factory = functools.partial(linked_pipeline, build_pipeline)
        spec = WorkerSpec(functools.partial(worker_shell, factory, func, dict(config)))
        shell = None
        link = MapLink(parent)
    else:
        spec = None
        shell = Shell(parent)
    start_method = options["start_method"] or default_start_method()
    workers = options["workers"] or (0 if mode == "dask" else 4)
    return MapPlan(
        mode=mode,
        workers=workers,
        client=options["client"],
        chunk_size=options["chunk_size"],
        timeout=options["timeout"],
        should_process=options["should_process"],
        progress=_progress(func, options["progress"]),
        start_method=start_method,
        retries=config["retries"],
        cache=parent.cache if process else None,
        limiter=parent.limiter if process else None,
        pipeline=parent,
        on_cache_hit=parent.callbacks.on_cache_hit,
        spec=spec,
        shell=shell,
        link=link,
        # What get_opero_info shows next to the @opero settings: the map's own, as it runs them.
        settings=MappingProxyType(
            {**options, "mode": mode, "workers": workers, "start_method": start_method}
        ),
    )


def _progress(func: Callable[..., Any], progress: bool | None) -> Progress | None:
    """What the map shows as it runs: nothing (False), or a meter named after ``func``."""
    if progress is False:
        return None
    return Progress(label=getattr(func, "__name__", type(func).__name__), summary=bool(progress))


def _attach(wrapper: Any, func: Callable[..., Any], plan: MapPlan) -> Any:
    functools.update_wrapper(wrapper, func)
    wrapper.__opero__ = plan.pipeline
    wrapper.__opmap__ = plan
    wrapper.statistics = plan.pipeline.statistics
    wrapper.cache_clear = plan.pipeline.cache.clear if plan.pipeline.cache else (lambda: None)
    return wrapper


def sync_wrapper(func: Callable[..., Any], plan: MapPlan, ordered: bool) -> Any:
    """``f(items)`` and its lazy forms for a map whose loop runs in the caller's thread."""
    from opero.concurrency.dispatch import iterate, map_all  # noqa: PLC0415

    def mapped(items: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        began = clock.now() if events.on else 0.0
        results = map_all(plan, items, args, kwargs, ordered=ordered)
        if events.on:
            map_ended(plan.pipeline, plan.mode, results, began)
        return results

    def flatten(batches: Generator[list[Any], None, None]) -> Generator[Any, None, None]:
        # A generator of its own, so closing it (or leaving it) stops the map at once.
        try:
            for batch in batches:
                yield from batch
        finally:
            batches.close()

    def imap(items: Iterable[Any], *args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        return flatten(iterate(plan, items, args, kwargs, ordered=True))

    def imap_unordered(
        items: Iterable[Any], *args: Any, **kwargs: Any
    ) -> Generator[Any, None, None]:
        return flatten(iterate(plan, items, args, kwargs, ordered=False))

    wrapper = _attach(mapped, func, plan)
    wrapper.imap = imap
    wrapper.imap_unordered = imap_unordered
    return wrapper


def threaded(sync_iterate: Callable[..., Iterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """An async iterator over a sync map loop run in a helper thread (async_process)."""

    async def run(
        plan: MapPlan,
        items: Iterable[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        ordered: bool,
    ) -> AsyncIterator[Any]:
        import asyncio  # noqa: PLC0415 - loads with the first async map, not with @opmap

        cancel = threading.Event()
        source: Any = sync_iterate(plan, items, args, kwargs, ordered=ordered, cancel=cancel)
        done = object()
        step: asyncio.Future[Any] | None = None
        try:
            while True:
                step = asyncio.ensure_future(asyncio.to_thread(next, source, done))
                value = await asyncio.shield(step)
                if value is done:
                    return
                yield value
        finally:
            # Cancelled (or left early): the loop thread notices within 0.1 s, kills
            # the workers and ends; only then can the generator be closed.
            cancel.set()
            if step is not None and not step.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(step)
            await asyncio.to_thread(source.close)

    return run


def async_wrapper(
    func: Callable[..., Any],
    plan: MapPlan,
    ordered: bool,
    engine: Callable[..., AsyncIterator[Any]],
) -> Any:
    """``await f(items)`` and its lazy forms, over ``engine``'s batches."""

    async def mapped(items: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        began = clock.now() if events.on else 0.0
        results: list[Any] = []
        async for batch in engine(plan, items, args, kwargs, ordered=ordered):
            results.extend(batch)
        if events.on:
            map_ended(plan.pipeline, plan.mode, results, began)
        return results

    async def flatten(batches: AsyncIterator[list[Any]]) -> AsyncIterator[Any]:
        async for batch in batches:
            for value in batch:
                yield value

    def imap(items: Iterable[Any], *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return flatten(engine(plan, items, args, kwargs, ordered=True))

    def imap_unordered(items: Iterable[Any], *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return flatten(engine(plan, items, args, kwargs, ordered=False))

    wrapper = _attach(mapped, func, plan)
    wrapper.imap = imap
    wrapper.imap_unordered = imap_unordered
    return wrapper
