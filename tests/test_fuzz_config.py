"""Hostile settings: every parameter of @opero and @opmap, fed arbitrary values.

Decoration either succeeds or raises ConfigurationError (a ValueError) whose
message names the parameter; never OverflowError, TypeError or anything else.
Stores stay where the test puts them: caches are in memory or redis (lazy:
nothing connects at decoration time), and disk/sqlite paths are under tmp_path.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opero import ConfigurationError, opero, opmap
from opero.core import limiters

#: Arbitrary values of every kind a caller might pass by mistake.
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.integers(max_value=-(10**300), min_value=-(10**400)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers() | st.text(max_size=3), max_size=3),
    st.tuples(st.integers()),
    st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3),
    st.sets(st.integers(), max_size=2),
    st.sampled_from(
        [
            object(),
            print,
            len,
            lambda: None,
            lambda *a, **k: None,
            ValueError,
            Exception,
            int,
            str,
            ValueError("x"),
            [ValueError],
            (ConnectionError, TimeoutError),
            ["thread"],
            ["memory"],
            {"mode": "thread"},
            Path("relative"),
            1j,
            range(3),
        ]
    ),
)

#: Valid values mixed in so that combinations are explored too.
VALID: dict[str, list[Any]] = {
    "mode": ["thread", "process", "async", "async_process", "dask"],
    "start_method": ["fork", "forkserver", "spawn"],
    "cache_backend": ["memory", "redis"],
    "cache_serializer": ["pickle", "json"],
    "rate_limit_backend": ["memory", "redis"],
    "rate_limit_scope": ["per_function", "per_args", "a-fuzz-group"],
    "arg_fallback": ["x", "keys"],
    "retries": [0, 1, 3],
    "workers": [1, 4],
    "chunk_size": [1, 10],
}


def sample(x: int, keys: list[str] | None = None) -> int:
    return x


def opero_parameters() -> list[str]:
    return [name for name in inspect.signature(opero).parameters if name != "func"]


def opmap_parameters() -> list[str]:
    own = [
        name
        for name, p in inspect.signature(opmap).parameters.items()
        if name != "func" and p.kind is p.KEYWORD_ONLY
    ]
    return own + opero_parameters()


#: What else a parameter needs for its value to be looked at (the layer it configures on).
CONTEXT: dict[str, dict[str, Any]] = {
    "cache_ttl": {"cache": True},
    "cache_backend": {"cache": True},
    "cache_key": {"cache": True},
    "cache_namespace": {"cache": True},
    "cache_maxsize": {"cache": True},
    "cache_serializer": {"cache": True, "cache_backend": "redis"},
    "cache_secret": {"cache": True, "cache_backend": "redis"},
    "rate_limit_scope": {"rate_limit": 1},
    "rate_limit_burst": {"rate_limit": 1},
    "rate_limit_backend": {"rate_limit": 1, "rate_limit_scope": "a-fuzz-group"},
    "fallback_delay": {"arg_fallback": "keys"},
}


@pytest.fixture(autouse=True)
def _forget_groups() -> Iterator[None]:
    """Named rate-limit groups made here must not leak into other tests."""
    groups, shared = dict(limiters._groups), dict(limiters._shared_groups)
    yield
    limiters._groups.clear()
    limiters._groups.update(groups)
    limiters._shared_groups.clear()
    limiters._shared_groups.update(shared)


def values_for(name: str) -> st.SearchStrategy[Any]:
    valid = VALID.get(name)
    return st.one_of(st.sampled_from(valid), HOSTILE) if valid else HOSTILE


def check(decorate: Any, name: str) -> None:
    """Decorating succeeds or raises ConfigurationError naming ``name``; nothing else escapes."""
    error: ConfigurationError | None = None
    try:
        decorate()
    except ConfigurationError as caught:
        error = caught
    if error is not None:
        assert isinstance(error, ValueError)
        assert name in str(error), f"{name!r} not named in: {error}"


FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("name", opero_parameters())
@FUZZ
@given(data=st.data())
def test_opero_parameter(name: str, data: st.DataObject) -> None:
    value = data.draw(values_for(name), label=name)
    kwargs = {**CONTEXT.get(name, {}), name: value}
    check(lambda: opero(**kwargs)(sample), name)


@pytest.mark.parametrize("name", opmap_parameters())
@FUZZ
@given(data=st.data())
def test_opmap_parameter(name: str, data: st.DataObject) -> None:
    value = data.draw(values_for(name), label=name)
    kwargs = {"progress": False, **CONTEXT.get(name, {}), name: value}
    if name == "client":
        kwargs["mode"] = data.draw(st.sampled_from([None, "dask"]), label="mode")
    check(lambda: opmap(**kwargs)(sample), name)


CONFIG_KEYS = st.sampled_from(
    ["host", "port", "db", "password", "username", "url", "client", "directory", "path", "x"]
)


@pytest.mark.parametrize("layer", ["cache", "rate_limit"])
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_redis_backend_config(layer: str, data: st.DataObject) -> None:
    name = f"{layer}_backend_config"
    config = data.draw(st.dictionaries(CONFIG_KEYS, HOSTILE, min_size=1, max_size=3), label=name)
    if layer == "cache":
        kwargs = {"cache": True, "cache_backend": "redis", name: config}
    else:
        kwargs = {"rate_limit": 1, "rate_limit_backend": "redis", name: config}
    check(lambda: opero(**kwargs)(sample), name)


@pytest.mark.parametrize("backend", ["memory", "disk", "sqlite"])
@FUZZ
@given(data=st.data())
def test_local_backend_config(backend: str, data: st.DataObject, tmp_path: Path) -> None:
    # A str or Path would be a real location: only ones under tmp_path are drawn.
    inside = st.text(alphabet="abc", min_size=1, max_size=3).map(lambda s: str(tmp_path / s))
    values = st.one_of(inside, HOSTILE.filter(lambda v: not isinstance(v, (str, Path))))
    config = data.draw(
        st.dictionaries(CONFIG_KEYS, values, max_size=2)
        | HOSTILE.filter(lambda v: not isinstance(v, dict)),
        label="cache_backend_config",
    )
    kwargs = {"cache": True, "cache_backend": backend, "cache_backend_config": config}
    check(lambda: opero(**kwargs)(sample), "cache_backend_config")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("min_delay", 10**400),
        ("max_delay", 10**400),
        ("backoff_factor", 10**400),
        ("rate_limit", 10**400),
        ("cache_ttl", 10**400),
        ("fallback_delay", 10**400),
        ("mode", ["thread"]),
        ("cache_backend", ["memory"]),
        ("rate_limit_backend", ["redis"]),
        ("start_method", ["fork"]),
        ("cache_serializer", ["json"]),
    ],
)
def test_known_escapes(name: str, value: Any) -> None:
    """The values that raised OverflowError or TypeError before."""
    kwargs = {"progress": False, **CONTEXT.get(name, {}), name: value}
    with pytest.raises(ConfigurationError, match=name):
        opmap(**kwargs)(sample)
    if name not in ("mode", "start_method"):
        del kwargs["progress"]
        with pytest.raises(ConfigurationError, match=name):
            opero(**kwargs)(sample)


@pytest.mark.parametrize(
    ("layer", "backend", "config", "needle"),
    [
        ("cache", "redis", {"port": "abc"}, "port"),
        ("cache", "redis", {"port": None}, "port"),
        ("cache", "redis", {"db": math.nan}, "db"),
        ("cache", "redis", {"url": 5}, "url"),
        ("cache", "redis", {"host": []}, "host"),
        ("cache", "redis", {"client": False}, "client"),
        ("rate_limit", "redis", {"port": None}, "port"),
        ("rate_limit", "redis", {"client": False}, "client"),
        ("rate_limit", "redis", {"url": ["redis://x"]}, "url"),
        ("cache", "disk", {"directory": 5}, "directory"),
        ("cache", "sqlite", {"path": None}, "path"),
        ("cache", "sqlite", {"directory": []}, "directory"),
    ],
)
def test_known_backend_config_escapes(
    layer: str, backend: str, config: dict[str, Any], needle: str
) -> None:
    """Values that raised ValueError, TypeError or AttributeError, or were accepted, before."""
    name = f"{layer}_backend_config"
    if layer == "cache":
        kwargs = {"cache": True, "cache_backend": backend, name: config}
    else:
        kwargs = {"rate_limit": 1, "rate_limit_backend": backend, name: config}
    with pytest.raises(ConfigurationError, match=name) as info:
        opero(**kwargs)(sample)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"cache_ttl": -1}, "cache_ttl"),
        ({"cache_backend": "punchcards"}, "cache_backend"),
        ({"rate_limit_burst": 0}, "rate_limit_burst"),
        ({"rate_limit_scope": "per_thing"}, "rate_limit_scope"),
        ({"fallback_delay": -1}, "fallback_delay"),
        ({"arg_fallback": 3}, "arg_fallback"),
        ({"cache_maxsize": 0}, "cache_maxsize"),
        ({"on_retry": 3}, "on_retry"),
    ],
)
def test_settings_of_a_layer_that_is_off_are_checked_too(
    kwargs: dict[str, Any], needle: str
) -> None:
    """A typo in a setting is a mistake even while its layer is off; it was ignored before."""
    with pytest.raises(ConfigurationError, match=needle):
        opero(**kwargs)
    with pytest.raises(ConfigurationError, match=needle):
        opmap(**kwargs)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_delay", 1e12),
        ("cache_ttl", math.inf),
        ("timeout", math.inf),
        ("timeout", 1e300),
        ("rate_limit", 1e-300),
        ("retries", 2**64),
        ("workers", 2**64),
    ],
)
def test_values_no_wait_or_pool_can_use_are_rejected(name: str, value: Any) -> None:
    """Each would fail later, inside a call (a sleep or lock timeout overflows, islice refuses)."""
    kwargs = {"progress": False, **CONTEXT.get(name, {}), name: value}
    with pytest.raises(ConfigurationError, match=name):
        opmap(**kwargs)(sample)
