"""The demo tour's pace (quick or full), its made-up keys and its text helpers.

Apart from the tour itself so that each stays readable; ``opero.demo`` re-exports them.
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass

from opero import AllFailedError
from opero._demo_server import HTTPStatusError

__all__ = ["FULL", "QUICK", "SEED", "WIDTH", "Pace", "demo_keys", "failure_label", "fit"]

#: The seed of every planned failure, delay and key: one seed, one tour.
SEED = 2024
#: The widest line the tour prints: an 80-column terminal shows each on one row.
WIDTH = 80


@dataclass(frozen=True)
class Pace:
    """How long the tour's waits are and how much it fetches."""

    #: URLs fetched by each ``@opmap`` section.
    urls: int
    #: Threads of the thread map.
    workers: int
    #: Concurrent tasks of the async map.
    async_workers: int
    #: Seconds a client waits for an answer before giving up on that attempt.
    timeout: float
    #: ``min_delay`` of the retry sections (doubling each retry).
    min_delay: float
    #: Delay range of the service's slow items.
    slow: tuple[float, float]
    #: Milliseconds the expensive lookup of the cache section takes.
    lookup_ms: int
    #: Calls per second of the rate-limit section, and how many calls it makes.
    rate: float
    rate_calls: int


# The two paces side by side, one column each, so they read as one table:
#        urls workers async timeout min_delay  slow         lookup_ms rate calls
_QUICK = (100, 16, 32, 0.3, 0.02, (0.02, 0.08), 100, 20, 20)
_FULL = (200, 8, 32, 1.5, 0.25, (0.2, 1.0), 800, 5, 30)
#: ``opero demo --quick``: the same tour in about five seconds.
QUICK = Pace(*_QUICK)
#: ``opero demo``: waits long enough to watch.
FULL = Pace(*_FULL)


def demo_keys(seed: int = SEED) -> tuple[str, str, str]:
    """Three made-up API keys; the service revokes the first."""
    rng = random.Random(f"{seed}:keys")
    first, second, third = (f"sk-demo-{rng.getrandbits(96):024x}" for _ in range(3))
    return first, second, third


def failure_label(error: BaseException) -> str:
    """How a map entry failed, by type: ``HTTP 503 after 4 attempts``, ``HTTP 404, not retried``."""

    def name(exc: BaseException | None) -> str:
        return f"HTTP {exc.status}" if isinstance(exc, HTTPStatusError) else type(exc).__name__

    if isinstance(error, AllFailedError):
        return f"{name(error.last_error)} after {error.attempt_count} attempts"
    return f"{name(error)}, not retried"


def fit(text: str, width: int = WIDTH) -> str:
    """``text`` with each line longer than ``width`` wrapped between words.

    Continuation lines keep the line's indent plus two spaces, so a wrapped error
    message still reads as one item.  Most of the tour's lines are laid out to fit;
    this catches the ones whose length depends on the run (error text, counts).
    """
    lines = []
    for line in text.split("\n"):
        if len(line) <= width:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines.extend(
            textwrap.wrap(
                line.strip(),
                width,
                initial_indent=indent,
                subsequent_indent=indent + "  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)
