"""opero: make any function resilient and parallel with one decorator.

``@opero(...)`` wraps a sync or async function in layers, outermost first:
cache → rate limit → retry (with backoff) → parameter fallback → your function.

Examples:
    >>> from opero import opero
    >>> @opero(retries=2, cache=True)
    ... def square(x: int) -> int:
    ...     return x * x
    >>> square(4)
    16
"""

from __future__ import annotations

from opero.core.attempts import AttemptRecord
from opero.core.breaker import Breaker
from opero.core.cache import clear_cache
from opero.core.correlation import correlation, correlation_id
from opero.core.deadline import remaining
from opero.core.stats import CandidateStatistics
from opero.decorators.opero import OperoFunction, opero
from opero.decorators.opmap import opmap
from opero.exceptions import (
    AllFailedError,
    CacheKeyWarning,
    CancelledItemError,
    CircuitOpenError,
    ConcurrencyError,
    ConfigurationError,
    DeadlineExceeded,
    OperoError,
    ResultRejected,
)
from opero.utils.logging import configure_logging

#: The release, written here only: pyproject.toml reads it (hatch's dynamic version), so
#: the installed metadata and ``opero.__version__`` cannot disagree.  The rewrite follows
#: the 2.x line on PyPI (last 2.7.5) and sorts above it, so no upgrade brings back the old
#: code; it stays a pre-release (PEP 440 ``a``/``b``/``rc``) until the API settles.
__version__ = "3.0.0a1"

__all__ = [
    "AllFailedError",
    "AttemptRecord",
    "Breaker",
    "CacheKeyWarning",
    "CancelledItemError",
    "CandidateStatistics",
    "CircuitOpenError",
    "ConcurrencyError",
    "ConfigurationError",
    "DeadlineExceeded",
    "OperoError",
    "OperoFunction",
    "ResultRejected",
    "__version__",
    "clear_cache",
    "configure_logging",
    "correlation",
    "correlation_id",
    "opero",
    "opmap",
    "remaining",
]
