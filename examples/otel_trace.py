"""A trace of one opero call, drawn as a waterfall: the picture on the Observability page.

Run ``python examples/otel_trace.py docs/images/opero-trace.svg``.  It calls a
function whose first key is revoked and whose upstream resets once, through the real
OpenTelemetry SDK (an in-memory exporter: nothing leaves the process), and draws the
spans it exported, with each ``opero.attempt`` and ``opero.wait`` event as a mark on
the call's bar.  Needs ``pip install "opero[otel]" opentelemetry-sdk``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from html import escape
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import opero
import opero.instrumentation as oi

WIDTH, ROW, LEFT = 960, 34, 330


def traced_call() -> list[ReadableSpan]:
    """Make the call and return the spans it exported (the function's own span included)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    resets = {"left": 1}

    @opero.opero(retries=2, min_delay=0.02, arg_fallback="api_key")
    def fetch_order(order: str, api_key: list[str]) -> str:
        with tracer.start_as_current_span("GET /orders"):
            if api_key[0] == "sk-live-revoked":
                raise PermissionError("401 key revoked")
            if resets["left"]:
                resets["left"] -= 1
                raise ConnectionError("connection reset")
            return f"order {order}"

    oi.enable(tracer_provider=provider)
    try:
        fetch_order("1138", api_key=["sk-live-revoked", "sk-live-spare"])
    finally:
        oi.reset()  # the provider given to enable() is forgotten
    return list(exporter.get_finished_spans())


def waterfall_svg(spans: Sequence[ReadableSpan]) -> str:
    """The spans as an SVG waterfall, oldest first; the opero call's events as marks."""
    ordered = sorted(spans, key=lambda span: span.start_time or 0)
    start = min(span.start_time or 0 for span in ordered)
    end = max(span.end_time or 0 for span in ordered)
    scale = (WIDTH - LEFT - 20) / max(end - start, 1)

    def x(ns: int) -> float:
        return LEFT + (ns - start) * scale

    height = ROW * (len(ordered) + 2) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-weight="bold">trace {ordered[0].context.trace_id:032x}</text>',
    ]
    for row, span in enumerate(ordered):
        y = 40 + row * ROW
        left, right = x(span.start_time or 0), x(span.end_time or 0)
        ours = span.name.startswith("opero ")
        colour = "#3b7dd8" if ours else "#8aa05a"
        indent = 10 if ours else 25
        name = span.name if len(span.name) < 48 else "..." + span.name[-45:]
        out.append(f'<text x="{indent}" y="{y + 15}">{escape(name)}</text>')
        out.append(
            f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 2):.1f}" height="20" '
            f'fill="{colour}" rx="3"/>'
        )
        for event in span.events if ours else ():
            attributes = event.attributes or {}
            if event.name == "opero.wait":  # stamped when the wait ended
                seconds = float(attributes.get("opero.wait.seconds", 0.0))  # type: ignore[arg-type]
                began, fill = event.timestamp - int(seconds * 1e9), "#f2c14e"
                ended = event.timestamp
            elif event.name == "opero.attempt":  # stamped when the attempt began
                seconds = float(attributes.get("opero.duration", 0.0))  # type: ignore[arg-type]
                began, ended = event.timestamp, event.timestamp + int(seconds * 1e9)
                failed = attributes.get("opero.outcome") == "failure"
                fill = "#d84b3b" if failed else "#4caf50"
            else:
                continue
            out.append(
                f'<rect x="{x(began):.1f}" y="{y + 3}" width="{max(x(ended) - x(began), 3):.1f}" '
                f'height="14" fill="{fill}"/>'
            )
    legend_y = 40 + len(ordered) * ROW + 20
    legend = [("#d84b3b", "failed attempt"), ("#4caf50", "attempt"), ("#f2c14e", "wait")]
    for i, (fill, label) in enumerate(legend):
        out.append(
            f'<rect x="{LEFT + i * 150}" y="{legend_y - 10}" width="10" height="10" fill="{fill}"/>'
        )
        out.append(f'<text x="{LEFT + i * 150 + 15}" y="{legend_y}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "opero-trace.svg")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(waterfall_svg(traced_call()), encoding="utf-8")
    print(target)
