"""structlog: opero's log lines (retries, fallbacks, cache hits, waits) rendered by structlog.

opero logs through the standard library's ``"opero"`` logger, so structlog's
``ProcessorFormatter`` renders its records like any other "foreign" (non-structlog)
log line: one JSON object per line here, or colored console output with
``structlog.dev.ConsoleRenderer()``.

Every opero record carries six fields as ``extra`` (``None`` where one does not
apply): ``opero_function``, ``opero_attempt``, ``opero_candidate`` (an index, never
the value), ``opero_delay``, ``opero_reason`` and ``opero_correlation_id``.
structlog's ``ExtraAdder`` copies them into the event, so each JSON line has them as
keys, for example::

    {"event": "opero: app.fetch attempt 1 failed (ConnectionError); retry 1 of 3 in 0.100s",
     "opero_function": "app.fetch", "opero_attempt": 1, "opero_candidate": null,
     "opero_delay": 0.1, "opero_reason": "backoff", "opero_correlation_id": "req-42",
     "logger": "opero", "level": "debug", "timestamp": "2026-01-01T00:00:00.000000Z"}
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from opero.utils.logging import FIELDS


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
            # The record's opero_* attributes become keys of the event.
            structlog.stdlib.ExtraAdder(allow=FIELDS),
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
