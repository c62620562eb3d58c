"""docs/grafana-dashboard.json queries exactly the metrics and labels opero exports.

The metrics come from real calls through the OpenTelemetry SDK's in-memory reader, named
as Prometheus names OpenTelemetry metrics (dots to underscores; a counter's ``_total``; a
histogram in seconds ``_seconds_bucket``, ``_sum``, ``_count``; units in braces dropped).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from opero import AllFailedError, Breaker, opero
from opero.testing import FakeClock
from otel_support import Telemetry, telemetry_fixture  # noqa: F401 - the fixture

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"


def _exported(telemetry: Telemetry) -> tuple[set[str], set[str]]:
    """Prometheus series names and label names of everything the reader holds."""
    names: set[str] = set()
    labels: set[str] = set()
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                base = metric.name.replace(".", "_")
                if metric.unit == "s":
                    base += "_seconds"
                    names.update(f"{base}_{part}" for part in ("bucket", "sum", "count"))
                else:
                    names.add(base + "_total")
                for point in metric.data.data_points:
                    labels.update(key.replace(".", "_") for key in point.attributes)
    return names, labels


def _every_metric(clock: FakeClock) -> None:
    state = {"n": 0}

    @opero(retries=1, arg_fallback="key", cache=True, rate_limit=100.0, min_delay=0.5)
    def fetch(item: int, key: list[str]) -> int:
        state["n"] += 1
        if state["n"] <= 2:
            raise ConnectionError("down")
        return item

    fetch(1, ["a", "b"])
    fetch(1, ["a", "b"])

    @opero(retries=0, circuit_breaker=Breaker(failure_threshold=1, failure_ratio=None))
    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(AllFailedError):
        down()


def test_the_dashboard_queries_what_opero_exports(clock: FakeClock, telemetry: Telemetry) -> None:
    _every_metric(clock)
    names, labels = _exported(telemetry)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queried = {name for expr in exprs for name in re.findall(r"\bopero_[a-z_]+", expr)}
    series = {name for name in queried if name.endswith(("_total", "_bucket", "_sum", "_count"))}
    grouped = {
        label.strip()
        for expr in exprs
        for group in re.findall(r"by \(([^)]*)\)", expr)
        for label in group.split(",")
    } - {"le"}
    assert series <= names, series - names
    assert queried - series <= labels, queried - series - labels  # the rest: label names
    assert grouped <= labels, grouped - labels
    # Every metric shows on the dashboard (a histogram through one of its three series).
    bases = {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in series}
    assert bases == shown, bases ^ shown


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "opero-overview"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "function"}
