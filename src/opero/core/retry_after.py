"""How long the server asked us to wait: ``Retry-After`` read from an error, never raising.

A 429 or 503 often says when to come back, and retrying sooner only earns
another refusal.  :func:`server_delay` finds that delay on the error a call
raised, from the first source that gives one:

1. the user's ``retry_after=`` callable (``error -> seconds | None``).  Its
   ``None`` means "nothing from me", so the built-in sources below still get
   their turn: a callable written for one client's errors need not re-implement
   the header for the others.  A callable that raises is logged (the error's
   type only) and treated as ``None``; a retry decision must not fail on it;
2. an ``error.retry_after`` attribute: seconds (int or float), a
   ``datetime.timedelta``, or a ``datetime.datetime`` meaning "until then"
   (a naive one is read as UTC);
3. the ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an
   HTTP-date) on ``error.headers`` (aiohttp's ``ClientResponseError``: a
   multidict, a tuple of pairs, or None) or ``error.response.headers`` (httpx's
   ``HTTPStatusError``; requests' ``HTTPError``, whose response may be None),
   or, for a result that ``retry_if_result`` rejected (a ``ResultRejected``),
   on the rejected response itself.  The header name is matched without regard
   to case.  No HTTP library is
   imported: any error shaped like these works, a user's own included.

Dates, in the attribute or the header, are measured against opero's wall
clock (:func:`opero.core.clock.wall`): ``time.time()`` normally, and under
:class:`opero.testing.FakeClock` its virtual wall time (2026-01-01T00:00:00Z
plus the virtual seconds), so a test can say "seven seconds from now" as a
date and see the same 7 s that a delay-seconds header would give.  ``wall=``
overrides it.  A date already past is a delay of ``0.0`` (the server allows a
retry now); a negative, infinite or unreadable value is no delay (``None``).
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Final

from opero.core import clock, validate
from opero.exceptions import ConfigurationError, ResultRejected

__all__ = ["check_settings", "server_delay"]

logger = logging.getLogger("opero")

#: RFC 9110 delay-seconds is digits only; a decimal fraction, which some servers
#: send, is accepted as well.  A sign, an exponent, "inf" or "nan" is not.
_SECONDS: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")
_HEADER: Final = "retry-after"
#: Headers looked through when a mapping's own ``get`` misses (a plain dict is
#: case-sensitive): enough for any real response, bounded for a hostile object.
_MOST_HEADERS: Final = 1000


def server_delay(
    error: BaseException,
    custom: Callable[[BaseException], float | None] | None = None,
    *,
    wall: Callable[[], float] | None = None,
) -> float | None:
    """The seconds ``error`` says to wait before the next attempt, or None if it says nothing.

    Args:
        error: The error an attempt raised.
        custom: The ``retry_after=`` setting, asked first.
        wall: Wall-clock seconds since the epoch that dates are measured
            against; opero's clock by default.

    Examples:
        >>> class RateLimited(Exception):
        ...     retry_after = 2
        >>> server_delay(RateLimited()), server_delay(ValueError())
        (2.0, None)
    """
    now = wall or clock.wall
    if custom is not None:
        delay = _from_custom(error, custom, now)
        if delay is not None:
            return delay
    try:
        delay = _as_delay(getattr(error, "retry_after", None), now)
        if delay is not None:
            return delay
        return _parse_header(_header_of(error), now)
    except Exception:  # a hostile attribute or property: no delay, never a new error
        return None


def _from_custom(
    error: BaseException, custom: Callable[[BaseException], object], now: Callable[[], float]
) -> float | None:
    """The user's callable, asked once; what it raises is logged, never propagated."""
    try:
        return _as_delay(custom(error), now)
    except Exception as problem:
        # The type only: a message can quote the request, and with it a credential.
        logger.warning(
            "opero: the retry_after callable raised %s for a %s; no server delay taken from it",
            type(problem).__name__,
            type(error).__name__,
        )
        return None


def _as_delay(value: object, now: Callable[[], float]) -> float | None:
    """Seconds from a number, a timedelta or a datetime ("until then"); None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            return None
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, datetime):
        return _until(value, now)
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _until(moment: datetime, now: Callable[[], float]) -> float | None:
    """Seconds from ``now`` until ``moment`` (0.0 once it has passed); naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = moment.timestamp() - now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _header_of(error: BaseException) -> str | None:
    """The ``Retry-After`` value on the error's headers or its response's, if any."""
    # A rejected result is the response itself (requests, httpx and aiohttp alike).
    response = (
        error.result if isinstance(error, ResultRejected) else getattr(error, "response", None)
    )
    for headers in (getattr(error, "headers", None), getattr(response, "headers", None)):
        if headers is not None:
            value = _lookup(headers)
            if value is not None:
                return value
    return None


def _lookup(headers: object) -> str | None:
    """A case-insensitive lookup in a mapping, a multidict or a sequence of pairs."""
    get = getattr(headers, "get", None)
    if callable(get):
        found = get("Retry-After")
        if found is not None:
            return _text(found)
    items = getattr(headers, "items", None)
    pairs = items() if callable(items) else headers
    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__iter__"):
        return None
    for count, pair in enumerate(pairs):
        if count >= _MOST_HEADERS:
            break
        if isinstance(pair, (tuple, list)) and len(pair) == 2:
            name = _text(pair[0])
            if name is not None and name.strip().lower() == _HEADER:
                return _text(pair[1])
    return None


def _text(value: object) -> str | None:
    """A header name or value as text (clients keep bytes or str)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def _parse_header(value: str | None, now: Callable[[], float]) -> float | None:
    """Delay-seconds or an HTTP-date, as seconds to wait; None when it is neither."""
    if value is None:
        return None
    match = _SECONDS.fullmatch(value)
    if match is not None:
        seconds = float(match.group(1))
        return seconds if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _until(moment, now)


def check_settings(retry_after: object, max_retry_after: object) -> None:
    """Check ``retry_after=`` (a plain callable or None) and ``max_retry_after=`` (seconds or None).

    Raises:
        ConfigurationError: naming the parameter and what it accepts.
    """
    validate.function("retry_after", retry_after, "retry_after(error) -> seconds or None")
    if inspect.iscoroutinefunction(retry_after):
        # Its coroutine would never be awaited: the delay is read between attempts, in sync.
        msg = (
            "retry_after must be None or a plain (not async) callable, called as "
            "retry_after(error) -> seconds or None; got an async function"
        )
        raise ConfigurationError(msg)
    if max_retry_after is not None:
        validate.number("max_retry_after", max_retry_after, hint=", or None")
