"""The OpenTelemetry adapter: opero's events as spans and metrics (the ``[otel]`` extra).

Imported only by :mod:`opero.instrumentation` when instrumentation is turned on, so
``import opero`` never loads ``opentelemetry``.  It needs only ``opentelemetry-api``.

Spans: one per decorated call (``opero <qualname>``, made current while the call
runs, so the function's own spans nest under it), with one span *event* per
attempt and per wait: an event costs a fraction of a child span (see
``bench/overhead.py``), and a retried call still shows each attempt's start,
duration, round, candidate index and error type.  A cache hit is a span of its own
(``opero.cache.hit`` true); a map is one span with its item and failure counts
(its items get none: never a million spans for a million items).

Metrics (meter ``opero``): counters ``opero.calls``, ``opero.attempts``,
``opero.retries``, ``opero.fallbacks`` (by ``opero.candidate.index``),
``opero.failures``, ``opero.cache.hits``, ``opero.cache.misses``,
``opero.breaker.transitions``; histograms (seconds) ``opero.call.duration``,
``opero.attempt.duration``, ``opero.rate_limit.wait``, ``opero.backoff.wait``
(a server's ``Retry-After`` too, by ``opero.wait.reason``).  Every data point has
``opero.function``; errors are named by ``error.type`` (the semantic conventions'
attribute, the exception's class name), the function also by ``code.function.name``.
Values of arguments or candidates are never attributes: a candidate is its index.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from opero import __version__
from opero.core.events import (
    AttemptEnded,
    BreakerChanged,
    CacheLookup,
    CallEnded,
    Event,
    MapEnded,
    Waited,
)

__all__ = ["Adapter", "configured"]

_SECONDS = "s"


def configured() -> bool:
    """A tracer or meter provider other than the API's default (proxy or no-op) is set."""
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    defaults = {"ProxyTracerProvider", "NoOpTracerProvider"}
    defaults |= {"_ProxyMeterProvider", "NoOpMeterProvider"}
    return (
        type(tracer_provider).__name__ not in defaults
        or type(meter_provider).__name__ not in defaults
    )


def _short(function: str) -> str:
    return "opero " + function


class Adapter:
    """Both an `events.Tracer` (the call's span around it) and a hook (everything else)."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or metrics.get_meter_provider()
        self.tracer = tracer_provider.get_tracer("opero", __version__)
        meter = meter_provider.get_meter("opero", __version__)
        count = meter.create_counter
        self.calls = count("opero.calls", "{call}", "Decorated calls, by outcome")
        self.attempts = count("opero.attempts", "{attempt}", "Calls of the function")
        self.retries = count("opero.retries", "{attempt}", "Attempts that began a new round")
        self.fallbacks = count("opero.fallbacks", "{attempt}", "Attempts on a later candidate")
        self.failures = count("opero.failures", "{call}", "Calls that ended with an error")
        self.hits = count("opero.cache.hits", "{call}", "Calls the cache answered")
        self.misses = count("opero.cache.misses", "{call}", "Calls the cache could not answer")
        self.transitions = count("opero.breaker.transitions", "{transition}", "Breaker changes")
        histogram = meter.create_histogram
        self.call_time = histogram("opero.call.duration", _SECONDS, "Whole calls")
        self.attempt_time = histogram("opero.attempt.duration", _SECONDS, "One attempt each")
        self.rate_wait = histogram("opero.rate_limit.wait", _SECONDS, "Waits for a rate slot")
        self.backoff_wait = histogram("opero.backoff.wait", _SECONDS, "Waits before a retry")

    # The tracer side: a span around each call.
    def start(self, function: str, breaker: str | None) -> Any:
        """Open the call's span and make it current; what `end` needs."""
        attributes = {"opero.function": function, "code.function.name": function}
        if breaker is not None:
            attributes["opero.breaker.state"] = breaker
        span = self.tracer.start_span(
            _short(function), kind=SpanKind.INTERNAL, attributes=attributes
        )
        return span, context.attach(trace.set_span_in_context(span))

    def hit(self, function: str) -> None:
        """A cache hit's span: the call, answered without calling the function."""
        attributes: dict[str, Any] = {"opero.function": function, "opero.cache.hit": True}
        attributes["code.function.name"] = function
        self.tracer.start_span(_short(function), attributes=attributes).end()

    def end(self, handle: Any, event: CallEnded) -> None:
        """Close the call's span with its outcome (its status an error unless it succeeded)."""
        span, token = handle
        context.detach(token)
        span.set_attribute("opero.outcome", event.outcome)
        span.set_attribute("opero.attempts", event.attempts)
        if event.error_type is not None:
            span.set_attribute("error.type", event.error_type)
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    # The hook side: every event.
    def __call__(self, event: Event) -> None:
        """Record ``event``: metrics always, and on the current span where it belongs."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def _call(self, event: CallEnded) -> None:
        attributes = {"opero.function": event.function, "opero.outcome": event.outcome}
        if event.error_type is not None:
            attributes["error.type"] = event.error_type
            self.failures.add(1, attributes)
        self.calls.add(1, attributes)
        self.call_time.record(event.duration, attributes)

    def _attempt(self, event: AttemptEnded) -> None:
        attributes: dict[str, Any] = {
            "opero.function": event.function,
            "opero.outcome": "success" if event.ok else "failure",
        }
        if event.error_type is not None:
            attributes["error.type"] = event.error_type
        self.attempts.add(1, attributes)
        self.attempt_time.record(event.duration, attributes)
        where = {"opero.function": event.function}
        if event.kind == "retry":
            self.retries.add(1, where)
        elif event.kind == "fallback":
            self.fallbacks.add(1, {**where, "opero.candidate.index": event.candidate or 0})
        span = trace.get_current_span()
        if span.is_recording():
            detail = {**attributes, "opero.attempt": event.attempt}
            detail["opero.duration"] = event.duration
            if event.candidate is not None:
                detail["opero.candidate.index"] = event.candidate
                span.set_attribute("opero.candidate.index", event.candidate)
            span.set_attribute("opero.attempt", event.attempt)
            span.add_event("opero.attempt", detail, timestamp=int(event.started * 1e9))

    def _waited(self, event: Waited) -> None:
        attributes = {"opero.function": event.function, "opero.wait.reason": event.reason}
        if event.reason == "rate_limit":
            self.rate_wait.record(event.seconds, attributes)
        else:
            self.backoff_wait.record(event.seconds, attributes)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("opero.wait", {**attributes, "opero.wait.seconds": event.seconds})
            if event.reason == "rate_limit":
                span.set_attribute("opero.rate_limit.wait", event.seconds)

    def _lookup(self, event: CacheLookup) -> None:
        where = {"opero.function": event.function}
        (self.hits if event.hit else self.misses).add(1, where)

    def _breaker(self, event: BreakerChanged) -> None:
        attributes: dict[str, Any] = {
            "opero.function": event.function,
            "opero.breaker.from": event.old,
            "opero.breaker.state": event.new,
        }
        if event.candidate is not None:
            attributes["opero.candidate.index"] = event.candidate
        self.transitions.add(1, attributes)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("opero.breaker", attributes)
            span.set_attribute("opero.breaker.state", event.new)

    def _map(self, event: MapEnded) -> None:
        end = time.time_ns()
        span = self.tracer.start_span(
            _short(event.function) + " map",
            start_time=end - int(event.duration * 1e9),
            attributes={
                "opero.function": event.function,
                "code.function.name": event.function,
                "opero.map.mode": event.mode,
                "opero.map.items": event.items,
                "opero.map.failures": event.failures,
            },
        )
        if event.failures:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)


_HANDLERS: dict[type[Event], Any] = {
    CallEnded: Adapter._call,
    AttemptEnded: Adapter._attempt,
    Waited: Adapter._waited,
    CacheLookup: Adapter._lookup,
    BreakerChanged: Adapter._breaker,
    MapEnded: Adapter._map,
}
