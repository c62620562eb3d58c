"""structlog: opero's log lines (retries, fallbacks, cache hits, waits) rendered by structlog.

opero logs through the standard library's ``"opero"`` logger, so structlog's
``ProcessorFormatter`` renders its records like any other "foreign" (non-structlog)
log line: one JSON object per line here, or colored console output with
``structlog.dev.ConsoleRenderer()``.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def send_opero_logs_to_structlog(
    level: int = logging.DEBUG, stream: TextIO | None = None
) -> logging.Handler:
    """Render the ``"opero"`` logger's records as JSON lines on ``stream`` (stderr by default).

    Returns the handler, so it can be removed again with
    ``logging.getLogger("opero").removeHandler(handler)``.  If your root logger
    already has a ``ProcessorFormatter`` handler, skip this: setting the level of
    the ``"opero"`` logger is enough, and a second handler would write each line twice.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        # Turns a standard-library record into an event dict.
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    logger = logging.getLogger("opero")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
