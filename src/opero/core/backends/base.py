"""What a persistent or shared cache backend provides, and the bookkeeping they share.

Disk, sqlite and redis stores hold bytes under string keys of the form
``opero:cache:{namespace}:{function}:{digest}``; the cache layer does keys, envelopes
(serialization, expiry, signatures) and single-flight.  Stores are shared: ten
functions that name the same directory or server use one store object, so a
failing server is reported once, not ten times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, final, runtime_checkable

from opero.core import clock, forksafe

__all__ = [
    "KEY_ROOT",
    "ByteStore",
    "CoolDown",
    "Health",
    "count_namespaces",
    "empty_stats",
    "function_prefix",
    "located",
    "namespace_prefix",
    "open_store",
    "opened_stores",
]

logger = logging.getLogger("opero")

#: Every cache key opero writes to a persistent store starts with this (shared
#: rate limits live under ``opero:ratelimit:``, which clearing caches never touches).
KEY_ROOT = "opero:cache:"


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def namespace_prefix(namespace: str | None) -> str:
    """The key prefix of one namespace (or of everything opero stored, for None)."""
    return KEY_ROOT if namespace is None else f"{KEY_ROOT}{_escape(namespace)}:"


def function_prefix(namespace: str, function: str) -> str:
    """The key prefix of one decorated function's entries."""
    return f"{namespace_prefix(namespace)}{_escape(function)}:"


def count_namespaces(keys: list[str]) -> dict[str, int]:
    """Entry counts per namespace, from ``opero:cache:{namespace}:...`` keys."""
    counts: dict[str, int] = {}
    for key in keys:
        if not key.startswith(KEY_ROOT):
            continue
        escaped = key[len(KEY_ROOT) :].split(":", 1)[0]
        name = escaped.replace("%3A", ":").replace("%25", "%")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


@runtime_checkable
class ByteStore(Protocol):
    """A place that keeps bytes under string keys, possibly shared between processes."""

    #: ``"disk"``, ``"sqlite"`` or ``"redis"``.
    kind: str
    #: Where it is (a directory, a file, a server), for messages; never a password.
    location: str
    health: Health

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None."""
        ...

    def set(self, key: str, data: bytes, ttl: float | None) -> None:
        """Store ``data``; ``ttl`` lets the store purge it later (opero checks expiry itself)."""
        ...

    def clear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many."""
        ...

    def stats(self, prefix: str) -> dict[str, Any]:
        """Entries, bytes and namespaces under ``prefix``, where cheap to count."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


@final
class CoolDown:
    """When to ask a server again after it failed: not during a cool-down, then one caller.

    After a failure nobody asks for ``first`` seconds, doubling up to ``longest``
    while failures go on, so a dead or frozen server costs one call per cool-down
    its timeout rather than every call.  When a cool-down ends, :meth:`available`
    lets exactly one caller through (the probe); the others keep to their
    fallback until the probe reports, or until ``lease`` seconds have passed for
    a probe that never reports (a cancelled task).  Times are read from opero's
    clock, so tests move them with :class:`~opero.testing.FakeClock`.

    Examples:
        >>> cool = CoolDown(first=0.5, longest=30.0)
        >>> cool.failed(), cool.available(), cool.succeeded(), cool.available()
        (True, False, True, True)
    """

    __slots__ = ("_cooldown", "_lock", "_out", "_probing", "_retry_at", "first", "lease", "longest")

    def __init__(self, first: float = 0.5, longest: float = 30.0, lease: float = 5.0) -> None:
        #: Seconds of the first cool-down, and of the longest one.
        self.first, self.longest = float(first), float(longest)
        #: Seconds a probe keeps the others out if it never reports.
        self.lease = float(lease)
        self._out = False
        self._probing = False
        self._cooldown = 0.0
        #: During an outage, when the next caller may probe.
        self._retry_at = 0.0
        self._lock = forksafe.lock()

    def available(self) -> bool:
        """Whether this caller may ask the server (False while cooling down or probing)."""
        if not self._out:
            return True
        with self._lock:
            if not self._out:
                return True
            current = clock.now()
            if current < self._retry_at:
                return False
            # This caller probes; the others wait for its outcome (or the lease).
            self._probing = True
            self._retry_at = current + max(self._cooldown, self.lease)
            return True

    def failed(self) -> bool:
        """Start or lengthen the cool-down; True if this failure began an outage."""
        with self._lock:
            began = not self._out
            self._out, self._probing = True, False
            self._cooldown = (
                self.first if began else min(self.longest, max(self._cooldown * 2, self.first))
            )
            self._retry_at = clock.now() + self._cooldown
        return began

    def succeeded(self) -> bool:
        """The server answered; True if that ended an outage."""
        if not self._out:
            return False
        with self._lock:
            ended = self._out
            self._out = self._probing = False
            self._cooldown = 0.0
        return ended

    def release(self) -> None:
        """A probe ended without a verdict: the next caller may probe at once."""
        if self._probing:
            with self._lock:
                if self._probing:
                    self._probing = False
                    self._retry_at = min(self._retry_at, clock.now())


class Health:
    """Failures of one store: logged once per kind, then skipped for a short cool-down.

    After a read, write or clear failure the store is not asked again until a
    :class:`CoolDown` has passed (0.5 s, doubling up to 30 s while it keeps
    failing), and then by one call at a time, so a dead or frozen server costs
    one call per cool-down its timeout rather than every call.  The first
    success ends the outage and a later failure is logged again.
    """

    __slots__ = ("_failing", "_lock", "cool_down", "errors", "name")

    def __init__(self, name: str, *, lease: float = 5.0) -> None:
        self.name = name
        #: Failed operations, counted.
        self.errors = 0
        self._failing: set[str] = set()
        #: ``lease``: the longest one operation on the store can take.
        self.cool_down = CoolDown(0.5, 30.0, lease)
        self._lock = forksafe.lock()

    def available(self) -> bool:
        """False while cooling down after a failure, and for all but one caller after it."""
        return self.cool_down.available()

    def failed(self, kind: str, exc: BaseException) -> None:
        """Record a failure of ``kind`` (``"read"``, ``"write"``, ``"corrupt"``...)."""
        with self._lock:
            self.errors += 1
            first = kind not in self._failing
            self._failing.add(kind)
        if kind in _OUTAGES:
            self.cool_down.failed()
        else:
            # A bad entry or value: the store itself answered.
            self.cool_down.release()
        if first:
            until = " until it works again" if kind in _RESOLVES else ""
            logger.warning(
                "opero cache %s: %s failed (%s: %s); calls go on without it. "
                "Further %s failures are counted, not logged%s.",
                self.name,
                kind,
                type(exc).__name__,
                exc,
                kind,
                until,
            )

    def succeeded(self, kind: str) -> None:
        """Record that ``kind`` works (again); a good read also ends decode failures."""
        if kind in ("read", "write"):
            self.cool_down.succeeded()
        if self._failing:
            with self._lock:
                for resolved in _RESOLVES.get(kind, (kind,)):
                    if resolved in self._failing:
                        self._failing.discard(resolved)
                        logger.info("opero cache %s: %s works again", self.name, resolved)


#: Failures that mean the store cannot be reached: they start a cool-down.
_OUTAGES = frozenset({"read", "write", "clear"})
#: A success of one kind also ends these kinds of failure.  Bad entries
#: ("corrupt", "signature") and unencodable values ("encode") are not outages
#: that end: they are reported once per store, so two writers that disagree
#: cannot turn the log into one line per call.
_RESOLVES = {"read": ("read",), "write": ("write",)}

_stores: dict[tuple[str, str], ByteStore] = {}
_stores_lock = forksafe.lock()


def open_store(kind: str, identity: str, factory: Callable[[], ByteStore]) -> ByteStore:
    """The store of ``kind`` at ``identity``, created by ``factory`` the first time."""
    with _stores_lock:
        store = _stores.get((kind, identity))
        if store is None:
            store = _stores[(kind, identity)] = factory()
        return store


def opened_stores() -> list[ByteStore]:
    """Every store this process has opened (for ``clear_cache``)."""
    with _stores_lock:
        return list(_stores.values())


def located(kind: str, where: object) -> tuple[str, Health]:
    """A file store's ``location`` (shown by ``statistics`` and the CLI) and its health."""
    return str(where), Health(f"{kind} {where}")


def empty_stats(kind: str, location: str) -> dict[str, Any]:
    """A file store's statistics before its file exists (asking must not create it)."""
    return {"backend": kind, "location": location, "entries": 0, "bytes": 0, "namespaces": {}}
