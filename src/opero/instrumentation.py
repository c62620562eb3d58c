"""Instrumentation: hooks that receive what opero did, and the OpenTelemetry switch.

In the spirit of stamina's ``set_on_retry_hooks``: a hook is any callable taking one
event, a typed frozen object (`CallEnded`, `AttemptEnded`, `Waited`, `CacheLookup`,
`BreakerChanged`, `MapEnded`) that names the function by ``module.qualname`` and a
fallback candidate by its index, never by value.  Feed them to Prometheus,
structlog or logfire::

    import opero.instrumentation as oi

    def count(event: oi.Event) -> None:
        if isinstance(event, oi.AttemptEnded) and not event.ok:
            failures.labels(event.function, event.error_type).inc()

    oi.set_hooks([count])

With the ``[otel]`` extra, OpenTelemetry spans and metrics are on by themselves when a
tracer or meter provider other than the default is set before a function is
decorated; ``enable(tracer_provider=..., meter_provider=...)`` turns them on at any
time with the providers given (tests pass their own), ``disable()`` turns every
listener off (hooks included) until ``enable()``.

Without a listener the engine builds no event: each place that would report one is
a single ``if events.on:``.  While one listens, every call runs through the engine
(some microseconds; see ``bench/overhead.py``).  The four callbacks (``on_retry``,
``on_success``, ``on_failure``, ``on_cache_hit``) keep working either way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from opero.core import events
from opero.core.events import (
    AttemptEnded,
    BreakerChanged,
    CacheLookup,
    CallEnded,
    Event,
    Hook,
    MapEnded,
    Waited,
)
from opero.exceptions import ConfigurationError

__all__ = [
    "AttemptEnded",
    "BreakerChanged",
    "CacheLookup",
    "CallEnded",
    "Event",
    "Hook",
    "MapEnded",
    "Waited",
    "disable",
    "enable",
    "get_hooks",
    "is_enabled",
    "reset",
    "set_hooks",
]

_state: dict[str, Any] = {"switch": True, "hooks": (), "adapter": None, "auto": True}


def set_hooks(hooks: Iterable[Hook] | None) -> None:
    """Send every event to ``hooks`` from now on (None or empty: to none of them).

    Replaces the hooks set before; the OpenTelemetry adapter, if on, stays on.
    """
    chosen = tuple(hooks or ())
    for hook in chosen:
        if not callable(hook):
            msg = f"set_hooks() takes callables that accept one event; got a {type(hook).__name__}"
            raise ConfigurationError(msg)
    _state["hooks"] = chosen
    _apply()


def get_hooks() -> tuple[Hook, ...]:
    """The hooks set with :func:`set_hooks` (the OpenTelemetry adapter is not among them)."""
    return tuple(_state["hooks"])


def enable(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Turn instrumentation on: the hooks, and OpenTelemetry when it can be.

    With ``tracer_provider`` or ``meter_provider`` (an OpenTelemetry SDK's, or any
    API-compatible one), spans and metrics go to them (the other one: the global
    provider).  Without either, to the providers an earlier ``enable()`` was given
    (:func:`reset` forgets them), else to the global providers if one is set (not
    the API's default); else only the hooks listen.  Needs the ``[otel]`` extra
    (``opentelemetry-api``) for providers.
    """
    _state["switch"] = True
    if tracer_provider is not None or meter_provider is not None:
        _state["adapter"] = _adapter(tracer_provider, meter_provider, explicit=True)
    elif _state["adapter"] is None:
        _state["adapter"] = _adapter(None, None, explicit=False)
    _state["auto"] = False
    _apply()


def disable() -> None:
    """Turn every listener off (hooks and OpenTelemetry) until :func:`enable`.

    Calls then take their plain paths again and build no event at all.
    """
    _state["switch"] = False
    _state["auto"] = False
    _apply()


def reset() -> None:
    """Back to how ``import opero`` left it: no hooks, no providers given to `enable`, and
    OpenTelemetry on again only for functions decorated once a global provider is set.

    ``disable()`` then ``enable()`` resumes the providers given before; this forgets
    them (a test's, or ones shut down since).
    """
    _state.update(switch=True, hooks=(), adapter=None, auto=True)
    _apply()


def is_enabled() -> bool:
    """Someone listens: the engine builds and sends events."""
    return events.on


def detect() -> None:
    """At decoration time: turn OpenTelemetry on if its API is loaded and a provider is set.

    Costs one dict lookup while ``opentelemetry`` is not imported, and nothing
    after ``enable()`` or ``disable()`` (the user decided).
    """
    if _state["auto"] and _state["adapter"] is None and "opentelemetry.trace" in sys.modules:
        adapter = _adapter(None, None, explicit=False)
        if adapter is not None:
            _state["adapter"] = adapter
            _apply()


def _adapter(tracer_provider: Any, meter_provider: Any, *, explicit: bool) -> Any:
    try:
        from opero.core import otel  # noqa: PLC0415 - only with the [otel] extra
    except ImportError:
        if explicit:
            msg = (
                "enable(tracer_provider=, meter_provider=) needs the [otel] extra: "
                "pip install 'opero[otel]'"
            )
            raise ConfigurationError(msg) from None
        return None
    if not explicit and not otel.configured():
        return None
    return otel.Adapter(tracer_provider, meter_provider)


def _apply() -> None:
    adapter = _state["adapter"] if _state["switch"] else None
    hooks: tuple[Hook, ...] = _state["hooks"] if _state["switch"] else ()
    events.hooks = (*hooks, adapter) if adapter is not None else hooks
    events.tracer = adapter
    events.on = bool(events.hooks)
