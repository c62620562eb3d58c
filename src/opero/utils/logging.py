"""The ``"opero"`` logger and a one-call way to see what it says.

Importing opero attaches only a ``NullHandler``: a library never configures
the root logger.  :func:`configure_logging` attaches exactly one handler of its
own and replaces it on a second call instead of duplicating lines.

The logger also carries a filter that masks credentials in every line it
handles, whatever handler the application attaches: a server's error may quote
the URL it was given, and ``redis://user:password@host`` must not reach a log.

Every record of the logger carries the same six attributes (``extra`` fields),
``None`` where one does not apply, so a JSON or structlog formatter needs no parsing
of the message: ``opero_function`` (``module.qualname``), ``opero_attempt``,
``opero_candidate`` (the ``arg_fallback`` index, never the value), ``opero_delay``
(seconds), ``opero_reason`` (``"backoff"``, ``"retry_after"``, ``"rate_limit"``) and
``opero_correlation_id`` (:func:`opero.correlation_id` where the record was written).
The engine passes the ones it knows (:func:`fields`); a filter on the logger fills
in the rest.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from opero.core.correlation import correlation_id

__all__ = ["FIELDS", "configure_logging", "fields", "logger"]

#: The attributes every record of the ``"opero"`` logger has (``None`` where not applicable).
FIELDS = (
    "opero_function",
    "opero_attempt",
    "opero_candidate",
    "opero_delay",
    "opero_reason",
    "opero_correlation_id",
)


def fields(
    function: str | None,
    attempt: int | None = None,
    candidate: int | None = None,
    delay: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The ``extra`` of a record about ``function`` (the correlation id is filled in later)."""
    return {
        "opero_function": function,
        "opero_attempt": attempt,
        "opero_candidate": candidate,
        "opero_delay": delay,
        "opero_reason": reason,
    }


class _Fields(logging.Filter):
    """Gives every record the six ``opero_*`` attributes: the ones not passed are ``None``,
    the correlation id is the one current where the record is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        attributes = record.__dict__
        if "opero_correlation_id" not in attributes:
            attributes["opero_correlation_id"] = correlation_id()
        for name in FIELDS[:5]:
            attributes.setdefault(name, None)
        return True


class _HideCredentials(logging.Filter):
    """Masks URL credentials (``user:password@``, ``?password=``) in a record and its traceback.

    Cheap for the usual line: the masking runs only when the text has ``://``
    or ``=`` in it, and then only on records that are actually handled.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it itself
            return True
        if "://" in message or "=" in message:
            from opero.core.secrets import scrub  # noqa: PLC0415 - only when needed

            masked = scrub(message)
            if masked != message:
                record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            from opero.core.secrets import scrub  # noqa: PLC0415

            text = logging.Formatter().formatException(record.exc_info)
            masked = scrub(text)
            if masked != text:
                record.exc_text = masked
        return True


#: The logger every opero module writes to.
logger = logging.getLogger("opero")
logger.addHandler(logging.NullHandler())
if not any(isinstance(f, _HideCredentials) for f in logger.filters):  # a reload adds none
    logger.addFilter(_HideCredentials())
if not any(type(f).__name__ == "_Fields" for f in logger.filters):
    logger.addFilter(_Fields())

_DEFAULT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
_handler: logging.Handler | None = None


def configure_logging(
    level: int | str = logging.INFO,
    format: str = _DEFAULT_FORMAT,
    stream: TextIO | None = None,
) -> logging.Logger:
    """Send opero's log lines to ``stream`` (stderr by default) at ``level``; return the logger.

    Calling it again replaces the handler it attached before.  Log lines name
    functions, attempts, candidate indexes and error types, never argument
    values, so API keys passed as fallback candidates stay out of logs.

    Examples:
        >>> import logging
        >>> from opero import configure_logging
        >>> logger = configure_logging(level=logging.DEBUG)
        >>> logger.name
        'opero'
    """
    global _handler  # noqa: PLW0603 - one handler per process is the point
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(format))
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = handler
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
