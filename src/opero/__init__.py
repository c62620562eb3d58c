"""opero: make any function resilient and parallel with one decorator.

``@opero(...)`` wraps a sync or async function in layers, outermost first:
cache → rate limit → retry (with backoff) → parameter fallback → your function.

Example:
    >>> from opero import opero
    >>> @opero(retries=2, cache=True)
    ... def square(x: int) -> int:
    ...     return x * x
    >>> square(4)
    16
"""

from __future__ import annotations

from typing import Any

from opero.core.cache import clear_cache
from opero.decorators.opero import OperoFunction, opero
from opero.decorators.opmap import opmap
from opero.exceptions import (
    AllFailedError,
    CancelledItemError,
    ConcurrencyError,
    ConfigurationError,
    OperoError,
)
from opero.utils.logging import configure_logging

__all__ = [
    "AllFailedError",
    "CancelledItemError",
    "ConcurrencyError",
    "ConfigurationError",
    "OperoError",
    "OperoFunction",
    "__version__",
    "clear_cache",
    "configure_logging",
    "opero",
    "opmap",
]


def __getattr__(name: str) -> Any:
    # The version is read from the installed metadata only when asked for,
    # which keeps importlib.metadata off `import opero`.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            return version("opero")
        except PackageNotFoundError:  # running from a source tree without installing
            return "0.0.0+unknown"
    msg = f"module 'opero' has no attribute {name!r}"
    raise AttributeError(msg)
