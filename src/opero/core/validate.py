"""One way to check a setting, so every bad setting fails alike: ConfigurationError.

Each check names the parameter and what it accepts, and raises nothing but
:class:`~opero.ConfigurationError`, whatever it is given: the type is tested
before any comparison or conversion, an int too large for a float is rejected
instead of overflowing, and a choice is compared only once it is a ``str``, so
``mode=["thread"]`` is a bad choice rather than ``TypeError: unhashable type``.
Messages show a value through :func:`show`, which is short and never raises.

These run at decoration time only; no decorated call reaches this module.

Examples:
    >>> from opero.core.validate import choice, number
    >>> number("min_delay", 2)
    2.0
    >>> choice("mode", ["thread"], ("thread", "process"))
    Traceback (most recent call last):
    ...
    opero.exceptions.ConfigurationError: mode must be one of 'thread', 'process'; got ['thread']
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Collection
from typing import Any, Final

from opero.exceptions import ConfigurationError

__all__ = ["MAX_COUNT", "MAX_SECONDS", "choice", "flag", "function", "integer", "number", "show"]

#: The longest wait the platform's locks and sleeps accept (about 292 years): a delay,
#: timeout or TTL above it could only fail later, inside a call.
MAX_SECONDS: Final = math.floor(threading.TIMEOUT_MAX)
#: The largest count (retries, workers, sizes) that C-level APIs such as ``islice`` take.
MAX_COUNT: Final = sys.maxsize

_SHOWN: Final = 40


def show(value: object) -> str:
    """A short ``repr`` of ``value`` for a message; never raises, never runs long."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**_SHOWN:
        # repr() of a huge int is slow, and above 4300 digits it raises.
        digits = math.floor(math.log10(abs(value))) + 1
        return f"{str(value)[:_SHOWN] if digits < 4000 else '...'}... (an int of {digits} digits)"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not replace the real error
        return f"a {type(value).__name__}"
    if len(text) > 2 * _SHOWN:
        return f"{text[:_SHOWN]}... (a {type(value).__name__})"
    return text


def _fail(name: str, accepted: str, value: object) -> ConfigurationError:
    return ConfigurationError(f"{name} must be {accepted}; got {show(value)}")


def number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    exclusive: bool = False,
    maximum: float = MAX_SECONDS,
    kind: str = "a finite number of seconds",
    hint: str = "",
) -> float:
    """``value`` as a float, if it is an int or float (not a bool) in range; else raise.

    ``exclusive`` makes ``minimum`` itself invalid (``> minimum`` instead of ``>=``).
    ``hint`` is appended to the accepted range, e.g. ``", or None for no expiry"``.
    """
    result = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:  # an int beyond float range: rejected below
            result = math.nan
    if math.isfinite(result) and (
        minimum < result <= maximum if exclusive else minimum <= result <= maximum
    ):
        return result
    bound = "" if maximum == math.inf else f" and <= {maximum:g}"
    accepted = f"{kind} {'>' if exclusive else '>='} {minimum:g}{bound}{hint}"
    raise _fail(name, accepted, value)


def integer(
    name: str, value: object, *, minimum: int = 1, maximum: int = MAX_COUNT, hint: str = ""
) -> int:
    """``value`` if it is an int (not a bool) in ``[minimum, maximum]``; else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        bound = "" if maximum == MAX_COUNT else f" and <= {maximum}"
        raise _fail(name, f"an int >= {minimum}{bound}{hint}", value)
    return int(value)


def choice(name: str, value: object, choices: Collection[str], *, hint: str = "") -> str:
    """``value`` if it is one of the ``choices`` strings; else raise, listing them."""
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, f"one of {', '.join(map(repr, choices))}{hint}", value)
    return value


def flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 1, not ``"yes"``); else raise."""
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value)
    return value


def function(name: str, value: object, what: str) -> Callable[..., Any] | None:
    """``value`` if it is None or callable; ``what`` says how it will be called."""
    if value is not None and not callable(value):
        raise _fail(name, f"None or a callable, called as {what}", value)
    return value
