"""``opero demo``: the guided tour, run for real, and the flaky service it brings along."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from opero import AllFailedError
from opero._demo_server import (
    FlakyService,
    NotFoundError,
    ServiceUnavailableError,
    UnauthorizedError,
    aget,
    get,
)
from opero.demo import QUICK, SEED, WIDTH, demo_keys, failure_label, fit
from terminals import run_in_terminal, visible_lines


@dataclass(frozen=True)
class Run:
    out: str
    err: str
    code: int
    seconds: float


@pytest.fixture(scope="module")
def quick() -> Run:
    """One real ``opero demo --quick`` in a fresh interpreter, shared by the tests below.

    ResourceWarnings are switched on, so an unclosed socket would show on stderr.
    Its output is piped, as in a CI log: no terminal, so no progress bar is drawn.
    """
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-m", "opero.cli", "demo", "--quick"],
        capture_output=True,  # bytes: text mode would turn each \r of a bar into a newline
        timeout=50,
        check=False,
        env={**_without_tqdm_disable(), "COLUMNS": "80"},
    )
    took = time.monotonic() - start
    return Run(result.stdout.decode(), result.stderr.decode(), result.returncode, took)


def _without_tqdm_disable() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}


def _planned(kind: str) -> int:
    """How many of the quick tour's URLs the seed makes fail in this way."""
    service = FlakyService(seed=SEED, slow=QUICK.slow)
    return sum(service.plan(n).kind == kind for n in range(QUICK.urls))


def test_quick_tour_succeeds_within_15_seconds(quick: Run) -> None:
    assert quick.code == 0, quick.err
    assert quick.seconds < 15
    assert "Traceback" not in quick.err
    assert "ResourceWarning" not in quick.err
    assert re.search(r"Tour finished in [\d.]+s", quick.out)


def test_retries_with_backoff_happen(quick: Run) -> None:
    for attempt in (1, 2, 3):
        assert f"retry {attempt} after HTTP 503 from /flaky/3/report" in quick.out
    assert "200 OK on attempt 4" in quick.out
    assert re.search(r"retries: 3, waited 0\.\d\ds between attempts", quick.out)


def test_fallback_shows_key_positions_and_never_a_key(quick: Run) -> None:
    assert quick.out.count("tried key #0 -> key #1; answered with key #1") == 3
    assert "fallbacks: 3; the service answered 401 x3" in quick.out
    assert "UnauthorizedError: HTTP 401 from /ok/billing" in quick.out
    for key in demo_keys(SEED):
        secret = key.removeprefix("sk-demo-")
        for text in (quick.out, quick.err):
            assert key not in text
            assert secret[:8] not in text  # not even a fragment of it


def test_cache_serves_repeats(quick: Run) -> None:
    found = re.search(
        r"cache hits: (\d+), misses: (\d+); the service was asked (\d+) times for (\d+) lookups",
        quick.out,
    )
    assert found is not None
    hits, misses, asked, lookups = map(int, found.groups())
    assert (hits, misses, asked, lookups) == (4, 4, 4, 8)
    assert quick.out.count("from the cache") == hits


def test_rate_limit_holds(quick: Run) -> None:
    found = re.search(
        r"(\d+) calls started over ([\d.]+)s \(ideal ([\d.]+)s\): ([\d.]+) calls/s, limit (\d+)/s",
        quick.out,
    )
    assert found is not None
    calls, limit = int(found[1]), int(found[5])
    span, ideal, observed = float(found[2]), float(found[3]), float(found[4])
    assert (calls, limit) == (QUICK.rate_calls, QUICK.rate)
    assert ideal == pytest.approx((calls - 1) / limit, abs=0.01)
    assert span >= ideal - 0.01  # calls never start closer together than the limit allows
    assert observed <= limit * 1.02
    # No terminal: the bar's one summary line instead of its frames.
    assert re.search(rf"^ping: {calls} calls, 0 failed, [\d.]+ s$", quick.err, re.M)


def test_both_maps_return_every_entry_and_count_failures_by_type(quick: Run) -> None:
    reports = re.findall(r"(\d+) entries in [\d.]+s: (\d+) ok, (\d+) failed", quick.out)
    assert len(reports) == 2  # thread, then async
    planned_failures = sum(map(_planned, ("missing", "broken", "hanging")))
    assert planned_failures > 0
    for entries, ok, failed in reports:
        assert int(entries) == QUICK.urls
        assert int(ok) + int(failed) == QUICK.urls
        assert int(failed) == planned_failures
    missing = re.findall(r"HTTP 404, not retried\s+(\d+)", quick.out)
    assert missing == [str(_planned("missing"))] * 2
    assert quick.out.count("HTTP 503 after 4 attempts") == 2
    assert quick.out.count("TimeoutError after 4 attempts") == 2
    for name in ("fetch_item", "afetch_item"):  # each map's summary line (no terminal)
        line = rf"^{name}: {QUICK.urls} items, {planned_failures} failed, [\d.]+ s$"
        assert re.search(line, quick.err, re.M), quick.err


def test_summary_table_lists_every_section(quick: Run) -> None:
    summary = quick.out.split("Summary (from each function's .statistics()", 1)[1]
    rows = {
        match[1].strip(): [int(n) for n in match[2].split()]
        for match in re.finditer(r"^  ([a-z +]+?)\s{2,}((?:\d+\s+){6})[\d.]+s", summary, re.M)
    }
    assert list(rows) == [
        "retry + backoff",
        "key fallback",
        "cache",
        "rate limit",
        "opmap thread",
        "opmap async",
    ]
    # columns: calls, attempts, retries, fallbacks, cache hits, failed
    assert rows["retry + backoff"][:3] == [1, 4, 3]
    assert rows["key fallback"][3] == 3
    assert rows["cache"][4] == 4
    assert rows["rate limit"][0] == QUICK.rate_calls
    for name in ("opmap thread", "opmap async"):
        assert rows[name][0] == QUICK.urls
        assert rows[name][2] > 0


def test_quick_tour_fits_80_columns_and_draws_no_bar_off_a_terminal(quick: Run) -> None:
    widths = [len(line) for text in (quick.out, quick.err) for line in text.splitlines()]
    assert max(widths) <= WIDTH
    assert "\r" not in quick.err
    assert len(quick.err.splitlines()) == 3  # ping, then each map: one line apiece


def test_quick_tour_on_an_80_column_terminal_draws_labelled_bars_that_fit() -> None:
    """stdout and stderr on one real 80-column pty, as in a shell; bars and text share it."""
    screen = run_in_terminal(["-m", "opero.cli", "demo", "--quick"], columns=80, stdout_too=True)
    assert screen.code == 0
    lines = visible_lines(screen.terminal)
    assert max(len(line) for line in lines) <= WIDTH, max(lines, key=len)
    for bar in ("ping: 100%", "fetch_item: 100%", "afetch_item: 100%"):
        assert sum(line.startswith(bar) for line in lines) == 1, bar
    assert "Tour finished in" in screen.terminal
    assert not re.search(r"\d+ items, \d+ failed", screen.terminal)  # bars, not summaries


def test_fit_wraps_long_lines_between_words_with_a_hanging_indent() -> None:
    text = "   " + " ".join(["word"] * 30) + "\nshort"
    lines = fit(text, width=40).split("\n")
    assert max(map(len, lines)) <= 40
    assert lines[0].startswith("   word")
    assert all(line.startswith("     word") for line in lines[1:-1])
    assert lines[-1] == "short"
    assert " ".join(" ".join(lines[:-1]).split()) == " ".join(["word"] * 30)


def test_demo_keys_are_reproducible_and_distinct() -> None:
    assert demo_keys(SEED) == demo_keys(SEED)
    assert len(set(demo_keys(SEED))) == 3
    assert demo_keys(SEED) != demo_keys(SEED + 1)


def test_failure_labels_name_status_and_attempts() -> None:
    unavailable = ServiceUnavailableError(503, "/items/1")
    assert failure_label(AllFailedError("x", [unavailable] * 4)) == "HTTP 503 after 4 attempts"
    assert failure_label(NotFoundError(404, "/items/2")) == "HTTP 404, not retried"
    timeouts = [TimeoutError("late")] * 2
    assert failure_label(AllFailedError("x", timeouts)) == "TimeoutError after 2 attempts"


# The service itself.


def test_plan_is_fixed_by_the_seed() -> None:
    one, again, other = (FlakyService(seed=s) for s in (7, 7, 8))
    plans = [one.plan(n) for n in range(300)]
    assert plans == [again.plan(n) for n in range(300)]
    assert plans != [other.plan(n) for n in range(300)]
    kinds = {plan.kind for plan in plans}
    assert kinds == {"ok", "slow", "flaky", "broken", "missing", "hanging"}
    assert all(plan.failures in (1, 2) for plan in plans if plan.kind == "flaky")


def test_revoked_key_gets_401_without_the_key_in_the_error() -> None:
    bad, good = "sk-test-revoked-0123456789", "sk-test-good-9876543210"
    with FlakyService(seed=1, revoked_keys=[bad]) as service:
        with pytest.raises(UnauthorizedError) as info:
            get(service.address, "/ok/profile", timeout=5, api_key=bad)
        assert info.value.status == 401
        assert bad not in str(info.value)
        assert get(service.address, "/ok/profile", timeout=5, api_key=good)
        assert get(service.address, "/ok/profile", timeout=5)  # no key at all
        assert service.answers[401] == 1


def test_flaky_path_fails_its_first_requests_then_recovers() -> None:
    with FlakyService(seed=1) as service:
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                get(service.address, "/flaky/2/report", timeout=5)
        assert get(service.address, "/flaky/2/report", timeout=5)
        assert service.count("/flaky/") == 3
        service.reset()
        with pytest.raises(ServiceUnavailableError):
            get(service.address, "/flaky/2/report", timeout=5)


def test_items_behave_as_planned() -> None:
    with FlakyService(seed=SEED, slow=(0.01, 0.02), hang=30) as service:
        first: dict[str, int] = {}
        for n in range(200):
            first.setdefault(service.plan(n).kind, n)
        with pytest.raises(NotFoundError):
            get(service.address, f"/items/{first['missing']}", timeout=5)
        for _ in range(3):
            with pytest.raises(ServiceUnavailableError):
                get(service.address, f"/items/{first['broken']}", timeout=5)
        flaky = first["flaky"]
        for _ in range(service.plan(flaky).failures):
            with pytest.raises(ServiceUnavailableError):
                get(service.address, f"/items/{flaky}", timeout=5)
        assert get(service.address, f"/items/{flaky}", timeout=5)
        assert get(service.address, f"/items/{first['slow']}", timeout=5)
        assert get(service.address, f"/items/{first['ok']}", timeout=5)
        with pytest.raises(TimeoutError, match="no answer from /items/"):
            get(service.address, f"/items/{first['hanging']}", timeout=0.2)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1  # closing wakes the handler still hanging
    assert service.answers["hang"] == 1


def test_async_client_speaks_http_1_0() -> None:
    async def exercise(address: tuple[str, int], hanging: int) -> bytes:
        with pytest.raises(ServiceUnavailableError):
            await aget(address, "/flaky/1/a", timeout=5)
        with pytest.raises(NotFoundError):
            await aget(address, "/nowhere", timeout=5)
        with pytest.raises(TimeoutError):
            await aget(address, f"/items/{hanging}", timeout=0.2)
        return await aget(address, "/flaky/1/a", timeout=5)

    with FlakyService(seed=SEED, hang=30) as service:
        hanging = next(n for n in range(1000) if service.plan(n).kind == "hanging")
        body = asyncio.run(exercise(service.address, hanging))
    assert b'"status": 200' in body


def test_using_the_service_outside_a_with_block_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="with block"):
        _ = FlakyService(seed=1).url
