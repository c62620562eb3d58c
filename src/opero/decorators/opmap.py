"""``@opmap``: a function that handles one item, run over many items with per-item resilience.

``f(items, *args, **kwargs)`` returns one entry per item, the result or the
exception, in input order (or completion order with ``ordered=False``);
``f.imap`` and ``f.imap_unordered`` yield them lazily with a bounded number
of items in flight.  Every ``@opero`` setting applies per item.  In thread and
async modes the whole per-item pipeline runs beside the call; in process modes
the cache and the rate limit stay in the parent (a hit never crosses a process
boundary; the rate holds across all workers) and retries and fallbacks run in
the worker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, overload

from opero.core import validate
from opero.core.assemble import validate_settings
from opero.decorators.opero import opero
from opero.decorators.types import (
    AsyncOpmapFunction,
    Mode,
    OpmapDecorator,
    OpmapFunction,
    StartMethod,
)
from opero.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from typing_extensions import Unpack

    from opero.decorators.types import OperoSettings

__all__ = ["MODES", "opmap"]

#: The concurrency modes and whether each runs ``async def`` functions (None: both kinds).
MODES: Mapping[str, bool | None] = MappingProxyType(
    {"thread": False, "process": False, "async": True, "async_process": True, "dask": None}
)
_START_METHODS = ("fork", "forkserver", "spawn")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


# An ``async def`` function first: it is also a function that returns something.
@overload
def opmap(  # type: ignore[overload-overlap]  # the async case is the narrower one
    func: Callable[Concatenate[T, P], Coroutine[Any, Any, R]], /
) -> AsyncOpmapFunction[T, P, R]: ...


@overload
def opmap(func: Callable[Concatenate[T, P], R], /) -> OpmapFunction[T, P, R]: ...


@overload
def opmap(
    *,
    mode: Mode | None = None,
    workers: int | None = None,
    ordered: bool = True,
    progress: bool | None = None,
    timeout: float | None = None,
    chunk_size: int | None = None,
    should_process: Callable[[], object] | None = None,
    start_method: StartMethod | None = None,
    client: Any = None,
    **opero_settings: Unpack[OperoSettings],
) -> OpmapDecorator: ...


def opmap(
    func: Callable[..., Any] | None = None,
    /,
    *,
    mode: Mode | None = None,
    workers: int | None = None,
    ordered: bool = True,
    progress: bool | None = None,
    timeout: float | None = None,
    chunk_size: int | None = None,
    should_process: Callable[[], Any] | None = None,
    start_method: StartMethod | None = None,
    client: Any = None,
    **opero_settings: Any,
) -> Any:
    """Run a one-item function over many items in a pool, each item resilient on its own.

    Args:
        mode: ``"thread"`` (default for sync functions), ``"process"``, ``"async"``
            (default for ``async def``; tasks on the caller's loop) or ``"async_process"``
            (an event loop in each worker process) or ``"dask"`` (batches of items on a
            ``dask.distributed`` cluster; sync or ``async def``).
        workers: Threads, processes or concurrent tasks (>= 1; default 4). With
            ``mode="dask"``: at most this many batches at a time on the cluster (default:
            a few per cluster thread, read when the map starts).
        ordered: Results in input order (True) or completion order.
        progress: ``None`` (default): a tqdm bar labelled with the function's name when
            stderr is a terminal (or in a notebook), nothing otherwise, as tqdm's
            ``disable=None``. ``True``: the bar on a terminal, and elsewhere (CI logs,
            pipes) one line when the map ends: ``fetch: 200 items, 3 failed, 1.24 s``.
            ``False``: nothing. ``TQDM_DISABLE=1`` in the environment: nothing either.
        timeout: Seconds an item may run (from when it starts); a late one gets
            ``TimeoutError`` in its slot.
        chunk_size: Items per dispatch; ``None`` picks a size from the input length.
        should_process: Checked before each item starts; once false, the rest come back as
            ``CancelledItemError``.
        start_method: ``"forkserver"`` (Linux default), ``"spawn"`` (elsewhere) or ``"fork"``.
        client: ``mode="dask"`` only: a ``distributed.Client``, a scheduler address
            (``"tcp://host:8786"``), or None for the current default client, looked up
            when the map starts.
        **opero_settings: Any ``@opero`` parameter, applied per item.

    Examples:
        >>> from opero import opmap
        >>> @opmap(workers=2, progress=False)
        ... def square(x: int) -> int:
        ...     return x * x
        >>> square([1, 2, 3])
        [1, 4, 9]
    """
    settings = dict(opero_settings)
    unknown = set(settings) - set(_opero_parameters())
    if unknown:
        msg = f"@opmap got unknown parameters {sorted(unknown)}"
        raise ConfigurationError(msg)
    options = {
        "mode": mode,
        "workers": workers,
        "ordered": ordered,
        "progress": progress,
        "timeout": timeout,
        "chunk_size": chunk_size,
        "should_process": should_process,
        "start_method": start_method,
        "client": client,
    }
    _validate(options)
    validate_settings(_full_config(settings))  # so opmap(retries=-1) fails before it is applied

    def decorate(target: Callable[..., Any]) -> Any:
        return _decorate(target, options, settings)

    return decorate(func) if func is not None else decorate


def _opero_parameters() -> list[str]:
    return list(_opero_defaults())


@functools.cache
def _opero_defaults() -> Mapping[str, Any]:
    """``@opero``'s parameters and defaults (read once; inspect is loaded only then)."""
    import inspect  # noqa: PLC0415 - keeps `import opero` light

    return MappingProxyType(
        {n: p.default for n, p in inspect.signature(opero).parameters.items() if n != "func"}
    )


def _validate(options: dict[str, Any]) -> None:
    mode = options["mode"]
    if mode is not None:
        validate.choice("mode", mode, MODES, hint=", or None for the default")
    if options["workers"] is not None:
        validate.integer("workers", options["workers"], hint=", or None for the default")
    _validate_cluster(mode, options)
    if options["timeout"] is not None:
        validate.number("timeout", options["timeout"], exclusive=True, hint=", or None")
    if options["chunk_size"] is not None:
        validate.integer("chunk_size", options["chunk_size"], hint=", or None for automatic")
    validate.function("should_process", options["should_process"], "should_process()")
    if options["start_method"] is not None:
        validate.choice("start_method", options["start_method"], _START_METHODS)
    validate.flag("ordered", options["ordered"])
    if options["progress"] is not None and not isinstance(options["progress"], bool):
        msg = f"progress must be None, True or False; got {validate.show(options['progress'])}"
        raise ConfigurationError(msg)


def _validate_cluster(mode: str | None, options: dict[str, Any]) -> None:
    client = options["client"]
    if client is not None:
        if mode != "dask":
            msg = "client= is for mode='dask' only"
            raise ConfigurationError(msg)
        if not isinstance(client, str) and not hasattr(client, "get_executor"):
            msg = (
                "client must be a distributed.Client, a scheduler address such as "
                f"'tcp://host:8786', or None; got {type(client).__name__}"
            )
            raise ConfigurationError(msg)
    if mode == "dask":
        if options["start_method"] is not None:
            msg = "start_method is for mode='process' and 'async_process'; not for mode='dask'"
            raise ConfigurationError(msg)
        from opero.concurrency.cluster import require_distributed  # noqa: PLC0415

        require_distributed()


def _decorate(func: Callable[..., Any], options: dict[str, Any], settings: dict[str, Any]) -> Any:
    # Pools, multiprocessing and cloudpickle load with the first @opmap, not with `import opero`.
    import inspect  # noqa: PLC0415

    from opero.concurrency.mapped import build_mapped  # noqa: PLC0415

    is_async = inspect.iscoroutinefunction(func)
    mode = _mode_for(options["mode"], is_async=is_async)
    return build_mapped(func, mode, options, _full_config(settings), is_async=is_async)


def _mode_for(mode: str | None, *, is_async: bool) -> str:
    """The mode a function runs in: the one asked for, if it runs this kind of function."""
    chosen = mode or ("async" if is_async else "thread")
    if MODES[chosen] not in (None, is_async):
        kind, modes = (
            ("sync", "'async' or 'async_process'")
            if is_async
            else ("async def", "'thread' or 'process'")
        )
        msg = f"mode={chosen!r} runs {kind} functions; for this function use mode={modes}"
        raise ConfigurationError(msg)
    return chosen


def _full_config(settings: dict[str, Any]) -> dict[str, Any]:
    return {**_opero_defaults(), **settings}
