"""The real OpenTelemetry SDK for the tests: in-memory spans and metrics, passed to opero
explicitly (``opero.instrumentation.enable(tracer_provider=, meter_provider=)``), so no test
touches the process-wide providers, which OpenTelemetry lets a process set only once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import opero.instrumentation as oi


@dataclass
class Telemetry:
    """What opero exported during one test."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (empty if it recorded nothing)."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of counter ``name`` over the points with these attributes."""
        return sum(
            p.value
            for p in self.points(name)
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        )

    def every_attribute(self) -> list[Any]:
        """Every attribute value of every span, span event and data point."""
        values: list[Any] = []
        for span in self.spans():
            values.extend((span.attributes or {}).values())
            values.append(span.name)
            for event in span.events:
                values.extend((event.attributes or {}).values())
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        values.extend(point.attributes.values())
        return values


@pytest.fixture(name="telemetry")
def telemetry_fixture() -> Iterator[Telemetry]:
    """opero enabled with an SDK tracer and meter provider of its own, for this test."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    oi.enable(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Telemetry(exporter, reader, tracer_provider)
    oi.reset()
    meter_provider.shutdown()
    tracer_provider.shutdown()
