"""retry_if_result (CONTRACT 27): a returned value that says "try again" is retried."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

from opero import AllFailedError, ResultRejected, opero
from opero.testing import FakeClock
from shells import Shell


class Response:
    """What an HTTP client returns: a status, and a body that must never be logged."""

    def __init__(self, status: int, body: str = "secret-token-123") -> None:
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"Response({self.status})"


def server(statuses: list[int]) -> tuple[Any, list[int]]:
    served: list[int] = []

    def get(path: str) -> Response:
        status = statuses.pop(0) if statuses else 200
        served.append(status)
        return Response(status)

    return get, served


def unavailable(response: Response) -> bool:
    return response.status == 503


def test_a_rejected_result_is_retried_after_the_backoff(clock: FakeClock, shell: Shell) -> None:
    get, served = server([503, 503, 200])
    fetch = opero(retries=3, min_delay=1.0, backoff_factor=2.0, retry_if_result=unavailable)(
        shell.fn(get)
    )
    assert shell.call(fetch, "/a").status == 200
    assert served == [503, 503, 200]
    assert clock.sleeps == [1.0, 2.0]
    stats = fetch.statistics()
    assert (stats.calls, stats.attempts, stats.retries, stats.failures) == (1, 3, 2, 0)


def test_exhausted_every_rejected_result_is_an_error_carrying_it(
    clock: FakeClock, shell: Shell
) -> None:
    get, served = server([503] * 10)
    failures: list[BaseException] = []
    successes: list[Any] = []
    fetch = opero(
        retries=2,
        retry_if_result=unavailable,
        on_failure=failures.append,
        on_success=successes.append,
    )(shell.fn(get))
    with pytest.raises(AllFailedError) as info:
        shell.call(fetch, "/a")
    errors = info.value.errors
    assert len(errors) == 3 == len(served)
    assert all(type(e) is ResultRejected for e in errors)
    assert [e.result.status for e in errors] == [503, 503, 503]  # type: ignore[attr-defined]
    assert info.value.__cause__ is errors[-1]
    assert failures == [info.value]
    assert successes == []
    # The value is carried, never shown: a response body may hold a token.
    assert "secret-token" not in str(info.value)
    assert "Response" not in str(info.value)
    assert fetch.statistics().failures == 1


def test_the_first_accepted_result_is_returned_and_fires_on_success(
    clock: FakeClock, shell: Shell
) -> None:
    get, _ = server([200])
    successes: list[Any] = []
    fetch = opero(retry_if_result=unavailable, on_success=successes.append)(shell.fn(get))
    result = shell.call(fetch, "/a")
    assert result.status == 200
    assert successes == [result]
    assert clock.sleeps == []
    assert fetch.statistics().attempts == 1


def test_an_async_predicate_is_awaited_for_an_async_function(clock: FakeClock) -> None:
    checked: list[int] = []

    async def still_busy(response: Response) -> bool:
        await asyncio.sleep(0)
        checked.append(response.status)
        return response.status == 503

    get, _ = server([503, 200])

    @opero(retries=2, retry_if_result=still_busy)
    async def fetch(path: str) -> Response:
        return get(path)

    assert asyncio.run(fetch("/a")).status == 200
    assert checked == [503, 200]


def test_rejected_results_go_to_the_next_candidate_when_fallback_on_covers_them(
    clock: FakeClock, shell: Shell
) -> None:
    seen: list[str] = []

    def get(path: str, key: list[str]) -> Response:
        seen.append(key[0])
        return Response(503 if key[0] == "a" else 200)

    fetch = opero(retries=1, arg_fallback="key", retry_if_result=unavailable)(shell.fn(get))
    assert shell.call(fetch, "/a", ["a", "b"]).status == 200
    assert seen == ["a", "b"]  # fallback_on = retry_on = Exception covers ResultRejected
    only_retry = opero(
        retries=1,
        min_delay=0.5,
        arg_fallback="key",
        retry_on=ConnectionError,
        retry_if_result=unavailable,
    )(shell.fn(get))
    seen.clear()
    with pytest.raises(AllFailedError):
        shell.call(only_retry, "/a", ["a", "b"])
    assert seen == ["a", "a"]  # not covered by fallback_on: retried from the first key


def test_rejection_and_errors_mix(clock: FakeClock, shell: Shell) -> None:
    outcomes: list[Any] = [ConnectionError("reset"), Response(503), Response(200)]

    def get(path: str) -> Response:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    fetch = opero(retries=3, retry_if_result=unavailable)(shell.fn(get))
    assert shell.call(fetch, "/a").status == 200
    assert fetch.statistics().retries == 2


def test_result_rejected_pickles_with_its_result() -> None:
    error = ResultRejected("rejected (attempt 1)", {"status": 503})
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ResultRejected
    assert copy.result == {"status": 503}
    assert str(copy) == "rejected (attempt 1)"
    everything = pickle.loads(pickle.dumps(AllFailedError("x", [error])))
    assert everything.errors[0].result == {"status": 503}
