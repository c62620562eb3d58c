"""Methods and arguments that must not be keys: ``cache_ignore=``, key-failure warnings,
and a memory cache that does not keep instances alive.

Every backend is real: disk and sqlite in the test's own directory, redis on database 9
of the shared server under a namespace of this test only (its keys deleted afterwards).
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import threading
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opero import CacheKeyWarning, ConfigurationError, opero, opmap
from opero.core.keys import Keys
from opero.core.sentinels import NO_KEY
from opero.testing import FakeClock
from shells import Shell

BACKENDS = ("memory", "disk", "sqlite", "redis")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``@opero`` cache settings for one backend, in a place of this test only."""
    name = request.param
    namespace = f"t{uuid.uuid4().hex}"
    settings: dict[str, Any] = {"cache": True, "cache_backend": name, "cache_namespace": namespace}
    if name == "disk":
        settings["cache_backend_config"] = {"directory": str(tmp_path / "disk")}
    elif name == "sqlite":
        settings["cache_backend_config"] = {"path": str(tmp_path / "cache.sqlite3")}
    elif name == "redis":
        redis = pytest.importorskip("redis")
        client = redis.Redis(host="127.0.0.1", port=6379, db=9, socket_connect_timeout=0.5)
        try:
            client.ping()
        except (redis.RedisError, OSError):
            client.close()
            pytest.skip("no redis-server answers on 127.0.0.1:6379")
        settings["cache_backend_config"] = {"host": "127.0.0.1", "port": 6379, "db": 9}
        yield settings
        keys = list(client.scan_iter(match=f"opero:cache:{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()
        return
    yield settings


class Client:
    """Holds a lock and a secret, like an HTTP or database client: it cannot be pickled."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.lock = threading.Lock()
        self.calls = 0

    def __repr__(self) -> str:
        return "Client(token='SECRET-TOKEN')"


class Catalog:
    """Module level, so disk, sqlite and redis keys can pickle the class by reference."""

    runs: ClassVar[list[str]] = []

    @classmethod
    def lookup(cls, sku: str) -> str:
        cls.runs.append(sku)
        return sku.upper()


class Outlet(Catalog):
    pass


@dataclass(frozen=True)
class Region:
    """Equal and hashable by value."""

    name: str
    runs: ClassVar[list[str]] = []

    @opero(cache=True)
    def label(self, suffix: str) -> str:
        self.runs.append(suffix)
        return self.name + suffix


@dataclass
class Query:
    """``eq`` without ``frozen``: unhashable, so its key part is its pickle."""

    text: str
    runs: ClassVar[list[int]] = []

    @opero(cache=True)
    def run(self, limit: int) -> str:
        self.runs.append(limit)
        return self.text * limit


# -- cache_ignore: the way out ------------------------------------------------------------


def test_an_ignored_parameter_is_left_out_of_the_key(shell: Shell, backend: dict[str, Any]) -> None:
    runs: list[int] = []

    def body(x: int, session: Client, scale: int = 1) -> int:
        runs.append(x)
        return x * scale

    f = opero(cache_ignore=("session",), **backend)(shell.fn(body))
    assert shell.call(f, 2, Client(0)) == 2
    assert shell.call(f, 2, Client(1)) == 2  # another unpicklable session: same entry
    assert shell.call(f, x=2, session=Client(2)) == 2  # keywords, defaults applied
    assert shell.call(f, 2, Client(3), 1) == 2
    assert shell.call(f, 2, Client(4), scale=3) == 6  # a parameter still in the key
    assert runs == [2, 2]
    stats = f.statistics()
    assert (stats.cache_hits, stats.cache_misses, stats.cache_errors) == (3, 2, 0)


def test_a_method_of_an_unpicklable_class_warns_once_naming_self_and_the_way_out(
    backend: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    class Service(Client):
        @opero(**backend)
        def price(self, sku: str) -> int:
            self.calls += 1
            return self.base + len(sku)

    service = Service(10)
    persistent = backend["cache_backend"] != "memory"
    if persistent:
        # Disk, sqlite and redis keys are built from the pickle, and the lock has none.
        with (
            caplog.at_level(logging.WARNING, logger="opero"),
            pytest.warns(CacheKeyWarning) as caught,
        ):
            prices = [service.price("abc"), service.price("abc"), Service(10).price("abc")]
        assert prices == [13, 13, 13]
        assert service.calls == 2  # uncached, and said so once
        (warning,) = caught.list
        text = str(warning.message)
        assert "'self'" in text
        assert "cache_ignore=('self',)" in text
        assert "cache_key=" in text
        assert "Service.price" in text
        assert "SECRET" not in text  # by name, never by value
        assert warning.filename == __file__  # points at the function to fix
        records = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(records) == 1
        assert "cache_ignore" in records[0].getMessage()
        assert "SECRET" not in records[0].getMessage()
    else:
        # In memory the instance itself is the key part: no failure, a hit per instance.
        assert service.price("abc") == 13
        assert service.price("abc") == 13
        assert service.calls == 1


def test_cache_ignore_self_shares_one_cache_across_instances(backend: dict[str, Any]) -> None:
    runs: list[str] = []

    class Service(Client):
        @opero(cache_ignore=("self",), **backend)
        def price(self, sku: str) -> int:
            runs.append(sku)
            return len(sku)

    assert Service(1).price("abc") == 3
    assert Service(2).price("abc") == 3
    assert Service(3).price(sku="abc") == 3
    assert runs == ["abc"]


def test_a_classmethod_is_keyed_by_its_class(backend: dict[str, Any]) -> None:
    lookup = opero(**backend)(Catalog.lookup.__func__)  # as @classmethod over @opero would
    Catalog.cached = classmethod(lookup)  # type: ignore[attr-defined]
    Catalog.runs.clear()
    assert Catalog.cached("a") == "A"  # type: ignore[attr-defined]
    assert Catalog.cached("a") == "A"  # type: ignore[attr-defined]
    assert Outlet.cached("a") == "A"  # type: ignore[attr-defined]  # another class, another key
    assert Catalog.runs == ["a", "a"]


def test_every_function_warns_once_on_its_own(tmp_path: Path) -> None:
    sqlite: dict[str, Any] = {
        "cache": True,
        "cache_backend": "sqlite",
        "cache_backend_config": {"directory": tmp_path},
    }

    @opero(**sqlite)
    def first(client: Client) -> int:
        return client.base

    @opero(**sqlite)
    def second(x: int, client: Client) -> int:
        return x + client.base

    with pytest.warns(CacheKeyWarning) as caught:
        results = [(first(Client(1)), second(1, client=Client(1))) for _ in range(3)]
    assert results == [(1, 2)] * 3
    messages = [str(w.message) for w in caught.list]
    assert len(messages) == 2
    assert "first" in messages[0]
    assert "'client'" in messages[0]
    assert "second" in messages[1]
    assert "cache_ignore=('client',)" in messages[1]


def test_an_unkeyable_memory_argument_warns_once_naming_it(shell: Shell) -> None:
    class Opaque:
        __hash__ = None  # type: ignore[assignment]

        def __reduce__(self) -> Any:
            raise TypeError("no pickling")

        def __repr__(self) -> str:
            return "SECRET"

    runs: list[int] = []

    def body(n: int, handle: Opaque) -> int:
        runs.append(n)
        return n

    f = opero(cache=True)(shell.fn(body))
    with pytest.warns(CacheKeyWarning) as caught:
        results = [shell.call(f, 1, Opaque()) for _ in range(3)]
    assert results == [1, 1, 1]
    assert runs == [1, 1, 1]
    (warning,) = caught.list
    assert "'handle'" in str(warning.message)
    assert "cache_ignore=('handle',)" in str(warning.message)
    assert "SECRET" not in str(warning.message)


def test_a_failing_custom_key_says_so() -> None:
    def broken(func: Any, x: int) -> Any:
        raise ValueError("SECRET")

    @opero(cache=True, cache_key=broken)
    def f(x: int) -> int:
        return x

    with pytest.warns(CacheKeyWarning, match="cache_key raised ValueError") as caught:
        results = [f(1), f(1)]
    assert results == [1, 1]
    assert len(caught.list) == 1
    assert "SECRET" not in str(caught.list[0].message)


def test_the_warning_reaches_stderr_without_configure_logging(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import threading
            from opero import opero

            class Service:
                def __init__(self):
                    self.lock = threading.Lock()

                @opero(cache=True, cache_backend="sqlite",
                       cache_backend_config={{"path": {str(tmp_path / "c.sqlite3")!r}}})
                def price(self, sku):
                    return len(sku)

            service = Service()
            for _ in range(3):
                assert service.price("abc") == 3
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("CacheKeyWarning") == 1
    assert "cache_ignore=('self',)" in done.stderr
    assert "service.py" in done.stderr


def test_warnings_as_errors_surface_the_key_failure(tmp_path: Path) -> None:
    # Under -W error (pytest's filterwarnings=error) the warning is raised where it is made.
    @opero(cache=True, cache_backend="sqlite", cache_backend_config={"directory": tmp_path})
    def f(client: Client) -> int:
        return client.base

    with pytest.raises(CacheKeyWarning, match="cache_ignore"):
        f(Client(1))


# -- validation ---------------------------------------------------------------------------


def test_an_unknown_name_is_a_configuration_error_naming_it() -> None:
    def fetch(url: str, session: object = None) -> str:
        return url

    with pytest.raises(ConfigurationError, match=r"cache_ignore.*'sesion'.*url, session"):
        opero(cache=True, cache_ignore=("sesion",))(fetch)
    with pytest.raises(ConfigurationError, match=r"cache_ignore.*'sesion'"):
        opero(cache_ignore="sesion")(fetch)  # checked with the cache off too
    with pytest.raises(ConfigurationError, match=r"cache_ignore.*'sesion'"):
        opmap(cache=True, cache_ignore=("sesion",), progress=False)(fetch)


@pytest.mark.parametrize("value", [3, [3], (n for n in ["url"]), b"url", {"url": 1}.items()])
def test_cache_ignore_must_be_names(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="cache_ignore must be"):
        opero(cache=True, cache_ignore=value)


def test_cache_ignore_with_cache_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"cache_ignore.*cache_key"):
        opero(cache=True, cache_ignore=("request",), cache_key=lambda func, *a, **k: 1)


def test_a_single_name_and_every_collection_work(clock: FakeClock) -> None:
    for ignore in ("session", ["session"], {"session"}, frozenset({"session"})):
        runs: list[int] = []

        @opero(cache=True, cache_ignore=ignore)
        def f(x: int, session: object) -> int:
            runs.append(x)  # noqa: B023 - each loop's function is called in that loop
            return x

        assert [f(1, object()), f(1, object())] == [1, 1]
        assert runs == [1]


def test_general_signatures_and_var_keywords() -> None:
    runs: list[Any] = []

    @opero(cache=True, cache_ignore=("request", "extra"))
    def f(a: int, /, *rest: int, request: object, flag: bool = False, **extra: object) -> int:
        runs.append((a, rest, flag))
        return a + sum(rest)

    assert f(1, 2, request=object()) == 3
    assert f(1, 2, request=object(), trace=object()) == 3
    assert f(1, 2, request=object(), flag=False) == 3
    assert f(1, 2, 3, request=object()) == 6
    assert f(1, 2, request=object(), flag=True) == 3
    assert runs == [(1, (2,), False), (1, (2, 3), False), (1, (2,), True)]


def test_opmap_items_share_entries_across_ignored_arguments() -> None:
    runs: list[int] = []
    lock = threading.Lock()

    @opmap(cache=True, cache_ignore=("session",), workers=2, progress=False)
    def fetch(n: int, session: Client) -> int:
        with lock:
            runs.append(n)
        return n * 2

    assert fetch([1, 2, 1], Client(0)) == [2, 4, 2]
    assert fetch([1, 2], Client(1)) == [2, 4]
    assert sorted(set(runs)) == [1, 2]
    assert len(runs) <= 3  # the repeated 1 may race its twin once; never recomputed later


# -- the memory cache and instances -------------------------------------------------------


def test_a_memory_cached_method_does_not_keep_its_instance_alive(shell: Shell) -> None:
    class Service:
        def __init__(self) -> None:
            self.calls = 0

    def body(self: Service, x: int) -> int:
        self.calls += 1
        return x * 2

    price = opero(cache=True)(shell.fn(body))
    service = Service()
    assert shell.call(price, service, 2) == 4
    assert shell.call(price, service, 2) == 4
    assert service.calls == 1  # a live instance still hits
    alive = weakref.ref(service)
    del service
    gc.collect()
    assert alive() is None
    # The dead instance's entry is dropped at the next store or look at the statistics.
    assert price.__opero__.cache.stats()["entries"] == 0
    other = Service()
    assert shell.call(price, other, 3) == 6
    assert price.__opero__.cache.stats()["entries"] == 1


def test_equal_instances_share_entries_as_before() -> None:
    Region.runs.clear()
    first = Region("eu")
    assert first.label("-1") == "eu-1"
    assert Region("eu").label("-1") == "eu-1"  # equal and hashable: one entry
    assert Region("us").label("-1") == "us-1"
    assert Region.runs == ["-1", "-1"]


def test_unhashable_instances_are_keyed_by_value_and_not_kept() -> None:
    Query.runs.clear()
    query = Query("a")
    assert query.run(2) == "aa"
    assert Query("a").run(2) == "aa"
    assert Query.runs == [2]
    alive = weakref.ref(query)
    del query
    gc.collect()
    assert alive() is None


def test_instances_without_weakref_support_are_held_as_before() -> None:
    class Slotted:
        __slots__ = ("base",)

        def __init__(self, base: int) -> None:
            self.base = base

        @opero(cache=True)
        def add(self, x: int) -> int:
            runs.append(x)
            return self.base + x

    runs: list[int] = []
    item = Slotted(1)
    assert item.add(1) == 2
    assert item.add(1) == 2
    assert runs == [1]


def test_a_method_hit_from_many_threads_after_instances_die() -> None:
    class Service:
        @opero(cache=True, cache_maxsize=None)
        def value(self, x: int) -> int:
            return x

    def work() -> None:
        for i in range(200):
            assert Service().value(i % 5) == i % 5

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    gc.collect()
    Service().value(99)  # a store: the dead instances' entries go
    assert Service.value.__opero__.cache.stats()["entries"] <= 2


# -- key shapes ---------------------------------------------------------------------------


def _shop(sku: str, request: object, count: int = 1, *, region: str = "eu") -> None: ...


def _lookup(sku: str, request: object, count: int = 1) -> None: ...


_values = st.one_of(st.integers(), st.text(max_size=5), st.none())


@given(sku=_values, count=_values, first=_values, second=_values)
def test_every_call_form_gives_one_key_whatever_the_ignored_value(
    sku: object, count: object, first: object, second: object
) -> None:
    for func in (_lookup, _shop):
        key = Keys(func, ("request",)).key
        forms = [
            key((sku, first, count), {}),
            key((sku, second), {"count": count}),
            key((), {"sku": sku, "request": second, "count": count}),
        ]
        assert all(form == forms[0] for form in forms)
        assert NO_KEY not in forms
        if count == 1:
            assert key((sku, first), {}) == forms[0]  # the default applied


def test_without_cache_ignore_the_all_positional_key_is_the_args_tuple() -> None:
    args = ("a", object(), 2)
    assert Keys(_lookup).key(args, {}) is args
    assert Keys(_lookup, weak_self=True).key(args, {}) is args  # no ``self``: untouched
