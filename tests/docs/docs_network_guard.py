"""Refuse every connection that would leave the machine while a docs example runs.

Imported by the example runner in the test process, and run as the bootstrap of
examples that need a process of their own: ``python docs_network_guard.py
script.py`` installs the guard, then runs the script as ``__main__``;
``python docs_network_guard.py -m module args...`` runs a module (pytest) the same way.
"""

from __future__ import annotations

import runpy
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["local_only", "patches"]

_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "", "0.0.0.0"})


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return host is None or (
        isinstance(host, str) and (host in _LOCAL_NAMES or host.startswith("127."))
    )


def _refuse(what: str) -> OSError:
    return ConnectionRefusedError(f"docs examples may not reach the network ({what})")


def patches() -> list[tuple[Any, str, Callable[..., Any]]]:
    """``(owner, name, replacement)`` for every entry point that could reach a remote host."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local(host):
            raise _refuse(f"lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def allowed(address: Any) -> bool:
        # AF_UNIX addresses (multiprocessing, forkserver) are strings or bytes.
        return not isinstance(address, tuple) or _is_local(address[0])

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            raise _refuse(f"connection to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            raise _refuse(f"connection to {address!r}")
        return real_connect_ex(self, address)

    return [
        (socket, "getaddrinfo", getaddrinfo),
        (socket.socket, "connect", connect),
        (socket.socket, "connect_ex", connect_ex),
    ]


@contextmanager
def local_only() -> Iterator[None]:
    """Inside the block, only loopback and local (AF_UNIX) connections are possible."""
    replacements = patches()
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in replacements]
    for owner, name, replacement in replacements:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


if __name__ == "__main__":
    for owner, name, replacement in patches():
        setattr(owner, name, replacement)
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
