"""examples/otel_trace.py: the trace on the Observability page, from a real call through the
OpenTelemetry SDK; no key in any span or in the picture."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from examples.otel_trace import traced_call, waterfall_svg


def test_the_trace_has_the_call_its_attempts_and_the_functions_spans() -> None:
    spans = traced_call()
    ours = [span for span in spans if span.name.startswith("opero ")]
    theirs = [span for span in spans if span.name == "GET /orders"]
    assert len(ours) == 1
    assert len(theirs) == 4  # revoked, reset, revoked again, answered
    (call,) = ours
    assert all(
        span.parent is not None and span.parent.span_id == call.context.span_id for span in theirs
    )
    attempts = [e.attributes for e in call.events if e.name == "opero.attempt"]
    assert [
        (a["opero.attempt"], a["opero.candidate.index"], a["opero.outcome"]) for a in attempts
    ] == [
        (1, 0, "failure"),
        (1, 1, "failure"),
        (2, 0, "failure"),
        (2, 1, "success"),
    ]
    svg = waterfall_svg(spans)
    assert svg.count('fill="#d84b3b"') == 3 + 1  # three failed attempts and the legend
    assert "sk-live" not in svg
    assert not any("sk-live" in str(v) for span in spans for v in (span.attributes or {}).values())
