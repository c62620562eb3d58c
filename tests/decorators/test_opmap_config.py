"""@opmap rejects bad settings at decoration time with a ConfigurationError naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest
from opmap_helpers import asquare, square

from opero import ConfigurationError, opmap


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"mode": "fibers"}, "mode"),
        ({"mode": ""}, "mode"),
        ({"workers": 0}, "workers"),
        ({"workers": -2}, "workers"),
        ({"workers": 2.5}, "workers"),
        ({"workers": True}, "workers"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"chunk_size": 1.5}, "chunk_size"),
        ({"should_process": True}, "should_process"),
        ({"should_process": "yes"}, "should_process"),
        ({"start_method": "vfork"}, "start_method"),
        ({"ordered": "yes"}, "ordered"),
        ({"progress": "yes"}, "progress"),
        ({"retries": -1}, "retries"),
        ({"mode": "process", "retries": -1}, "retries"),
        ({"mode": "process", "arg_fallback": "nope"}, "nope"),
        ({"mode": "process", "cache": True, "cache_backend": "punchcards"}, "cache_backend"),
    ],
)
def test_bad_settings_are_rejected_naming_the_parameter(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        opmap(**{"progress": False, **settings})(square)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="workers"):
        opmap(workers=0)(square)


@pytest.mark.parametrize("keyword", ["worker", "retry", "processes", "ordered_results"])
def test_unknown_keyword_is_rejected_by_name(keyword: str) -> None:
    with pytest.raises(ConfigurationError, match=keyword):
        opmap(**{keyword: 1})(square)


def test_unknown_keyword_is_rejected_before_a_function_is_given() -> None:
    with pytest.raises(ConfigurationError, match="bogus"):
        opmap(bogus=1)


@pytest.mark.parametrize("mode", ["async", "async_process"])
def test_sync_function_with_an_async_mode_is_rejected(mode: str) -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        opmap(mode=mode, progress=False)(square)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_async_function_with_a_sync_mode_is_rejected(mode: str) -> None:
    with pytest.raises(ConfigurationError, match="mode"):
        opmap(mode=mode, progress=False)(asquare)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn", None])
def test_valid_start_methods_are_accepted(method: str | None) -> None:
    mapped = opmap(mode="process", start_method=method, progress=False)(square)
    assert mapped.__opmap__.start_method in {"fork", "forkserver", "spawn"}


def test_default_start_method_is_not_fork_on_linux() -> None:
    import sys  # noqa: PLC0415

    mapped = opmap(mode="process", progress=False)(square)
    if sys.platform.startswith("linux"):
        assert mapped.__opmap__.start_method == "forkserver"
    else:
        assert mapped.__opmap__.start_method == "spawn"


def test_accepted_settings_do_not_start_anything() -> None:
    # Decorating is cheap and lazy: no pool exists until the first map.
    from opero.concurrency import pool  # noqa: PLC0415

    before = dict(pool._pools().processes)
    opmap(mode="process", workers=7, progress=False)(square)
    assert pool._pools().processes == before


def run_child(script: str) -> str:
    """Run ``script`` in a fresh interpreter; its standard output."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert child.returncode == 0, child.stderr
    return child.stdout


def test_dask_mode_without_distributed_names_the_extra() -> None:
    """In a child interpreter where ``distributed`` cannot be imported (as if not installed)."""
    out = run_child(
        "import sys\n"
        "sys.modules['distributed'] = None  # what Python does for a module that is absent\n"
        "from opero import ConfigurationError, opmap\n"
        "try:\n"
        "    opmap(mode='dask')(abs)\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n"
    )
    assert "pip install 'opero[dask]'" in out


def test_dask_mode_decorates_without_importing_distributed() -> None:
    """Importing distributed takes about a second: a decorated module must not pay it."""
    out = run_child(
        "import sys\n"
        "from opero import opmap\n"
        "opmap(mode='dask')(abs)\n"
        "print('distributed' in sys.modules)\n"
    )
    assert out.strip() == "False"
