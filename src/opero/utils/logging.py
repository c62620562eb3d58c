"""The ``"opero"`` logger and a one-call way to see what it says.

Importing opero attaches only a ``NullHandler``: a library never configures
the root logger.  :func:`configure_logging` attaches exactly one handler of its
own and replaces it on a second call instead of duplicating lines.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["configure_logging", "logger"]

#: The logger every opero module writes to.
logger = logging.getLogger("opero")
logger.addHandler(logging.NullHandler())

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

    Example:
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
