"""OpenTelemetry spans from the real SDK (in-memory exporter): one span per call, its attempts
and waits as span events, a span for a cache hit and one for a map, never a candidate's value."""

from __future__ import annotations

import subprocess
import sys

import pytest

import opero as opero_module
from opero import AllFailedError, Breaker, CircuitOpenError, opero, opmap
from opero.testing import FakeClock
from otel_support import Telemetry, telemetry_fixture  # noqa: F401 - the fixture
from shells import Shell

SECRET = "sk-live-TOPSECRET-0123456789"


def test_a_success_is_one_span_with_the_function_and_one_attempt_event(
    shell: Shell, telemetry: Telemetry
) -> None:
    f = opero()(shell.fn(lambda x: x))
    assert shell.call(f, 1) == 1
    (span,) = telemetry.spans()
    function = span.attributes["opero.function"]
    assert function.endswith("<lambda>")
    assert span.attributes["code.function.name"] == function
    assert span.attributes["opero.outcome"] == "success"
    assert span.attributes["opero.attempts"] == 1
    assert [event.name for event in span.events] == ["opero.attempt"]
    assert span.status.is_ok


def test_a_retry_shows_each_attempt_and_the_backoff(
    clock: FakeClock, shell: Shell, telemetry: Telemetry
) -> None:
    calls = []

    def body() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    f = opero(retries=3, min_delay=0.5, backoff_factor=2)(shell.fn(body))
    assert shell.call(f) == "ok"
    (span,) = telemetry.spans()
    assert [event.name for event in span.events] == [
        "opero.attempt",
        "opero.wait",
        "opero.attempt",
        "opero.wait",
        "opero.attempt",
    ]
    attempts = [e.attributes for e in span.events if e.name == "opero.attempt"]
    assert [(a["opero.attempt"], a["opero.outcome"]) for a in attempts] == [
        (1, "failure"),
        (2, "failure"),
        (3, "success"),
    ]
    assert attempts[0]["error.type"] == "ConnectionError"
    waits = [e.attributes["opero.wait.seconds"] for e in span.events if e.name == "opero.wait"]
    assert waits == [0.5, 1.0]
    assert span.attributes["opero.attempt"] == 3


def test_a_final_failure_is_an_error_span_with_its_type(
    clock: FakeClock, shell: Shell, telemetry: Telemetry
) -> None:
    def down() -> None:
        raise ConnectionError("down")

    f = opero(retries=1)(shell.fn(down))
    with pytest.raises(AllFailedError):
        shell.call(f)
    (span,) = telemetry.spans()
    assert span.attributes["error.type"] == "AllFailedError"
    assert span.attributes["opero.outcome"] == "failure"
    assert not span.status.is_ok


def test_a_fallback_names_the_candidate_by_index_only(
    clock: FakeClock, shell: Shell, telemetry: Telemetry
) -> None:
    def body(key: list[str]) -> str:
        if key[0] == SECRET:
            raise PermissionError(f"revoked {key[0]}")
        return "ok"

    f = opero(retries=0, arg_fallback="key")(shell.fn(body))
    assert shell.call(f, [SECRET, "spare-key"]) == "ok"
    (span,) = telemetry.spans()
    indices = [e.attributes["opero.candidate.index"] for e in span.events]
    assert indices == [0, 1]
    assert span.attributes["opero.candidate.index"] == 1
    values = telemetry.every_attribute()
    assert not any(SECRET in str(v) or "spare-key" in str(v) for v in values)


def test_a_cache_hit_is_a_span_of_its_own(shell: Shell, telemetry: Telemetry) -> None:
    f = opero(cache=True)(shell.fn(lambda x: x))
    shell.call(f, 1)
    shell.call(f, 1)
    computed, hit = telemetry.spans()
    assert "opero.cache.hit" not in computed.attributes
    assert hit.attributes["opero.cache.hit"] is True
    assert hit.attributes["opero.function"] == computed.attributes["opero.function"]


def test_a_rate_wait_is_on_the_span(clock: FakeClock, shell: Shell, telemetry: Telemetry) -> None:
    f = opero(rate_limit=4.0)(shell.fn(lambda: "ok"))
    shell.call(f)
    shell.call(f)
    _, second = telemetry.spans()
    assert second.attributes["opero.rate_limit.wait"] == pytest.approx(0.25)
    (wait,) = [e for e in second.events if e.name == "opero.wait"]
    assert wait.attributes["opero.wait.reason"] == "rate_limit"


def test_an_open_breaker_shows_its_transition_and_refusal(
    clock: FakeClock, shell: Shell, telemetry: Telemetry
) -> None:
    def down() -> None:
        raise ConnectionError("down")

    breaker = Breaker(failure_threshold=1, failure_ratio=None, cooldown=60)
    f = opero(retries=0, circuit_breaker=breaker)(shell.fn(down))
    with pytest.raises(AllFailedError):
        shell.call(f)
    with pytest.raises(CircuitOpenError):
        shell.call(f)
    opened, refused = telemetry.spans()
    assert opened.attributes["opero.breaker.state"] == "open"
    assert [e.name for e in opened.events][-1] == "opero.breaker"
    assert refused.attributes["error.type"] == "CircuitOpenError"
    assert refused.attributes["opero.breaker.state"] == "open"
    assert refused.attributes["opero.attempts"] == 0


def test_the_functions_own_spans_nest_under_the_call(shell: Shell, telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("user")
    seen: list[str | None] = []

    def work() -> str:
        seen.append(opero_module.correlation_id())
        with tracer.start_as_current_span("inside"):
            return "ok"

    shell.call(opero()(shell.fn(work)))
    inside, call = telemetry.spans()
    assert inside.parent is not None
    assert inside.parent.span_id == call.context.span_id
    assert seen == [format(call.context.trace_id, "032x")]  # the call span's trace id


def test_a_thread_maps_items_get_no_span_of_their_own(telemetry: Telemetry) -> None:
    @opmap(mode="thread", workers=2, progress=False, cache=True)
    def double(x: int) -> int:
        return 2 * x

    assert double(list(range(20))) == [2 * x for x in range(20)]
    assert double(list(range(20))) == [2 * x for x in range(20)]  # every item a cache hit
    assert [span.attributes["opero.map.items"] for span in telemetry.spans()] == [20, 20]
    assert telemetry.total("opero.cache.misses") == 20
    assert telemetry.total("opero.cache.hits") == 20


def test_import_opero_never_imports_opentelemetry() -> None:
    code = "import sys, opero, opero.instrumentation\n"
    code += "print(any('opentelemetry' in name for name in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


_GLOBAL_PROVIDER = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
from opero import opero
import opero.instrumentation as oi
@opero()
def f():
    return 1
f()
oi.disable()
f()
print(len(exporter.get_finished_spans()))
"""


def test_a_global_sdk_provider_set_before_decorating_turns_spans_on() -> None:
    # In a process of its own: OpenTelemetry lets a process set its global provider once.
    done = subprocess.run(
        [sys.executable, "-c", _GLOBAL_PROVIDER], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "1"


def test_a_process_map_is_one_span_with_its_counts(telemetry: Telemetry) -> None:
    results = _halve([0, 1, 2, 3])
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 1]
    (span,) = telemetry.spans()
    assert span.name.endswith(" map")
    assert span.attributes["opero.map.mode"] == "process"
    assert (span.attributes["opero.map.items"], span.attributes["opero.map.failures"]) == (4, 2)


@opmap(mode="process", workers=2, progress=False, retries=0)
def _halve(x: int) -> int:
    if x >= 2:
        raise ValueError("too big")
    return x // 1


def test_reset_forgets_the_providers_given_to_enable(telemetry: Telemetry) -> None:
    import opero.instrumentation as oi  # noqa: PLC0415

    @opero()
    def one() -> int:
        return 1

    one()
    oi.disable()
    oi.enable()  # resumes the test's providers
    one()
    assert len(telemetry.exporter.get_finished_spans()) == 2
    oi.reset()
    assert not oi.is_enabled()
    one()
    assert len(telemetry.exporter.get_finished_spans()) == 2


def test_functions_decorated_after_maps_are_gone_still_get_their_spans(
    telemetry: Telemetry,
) -> None:
    """A map's items get no span of their own; that mark must not pass on to a new
    function whose pipeline reuses the memory of a map that is gone."""
    import gc  # noqa: PLC0415

    def item(x: int) -> int:
        return x

    for _ in range(200):
        opmap(mode="thread", progress=False)(item)  # dropped at once
    gc.collect()
    functions = [opero()(item) for _ in range(200)]
    for function in functions:
        function(1)
    assert len(telemetry.exporter.get_finished_spans()) == 200
