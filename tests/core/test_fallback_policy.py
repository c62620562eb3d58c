"""FallbackPolicy's per-call functions: where the candidate goes, for every place the
parameter can sit, and what survives pickling (the functions are rebuilt, not pickled)."""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import pytest

from opero import ConfigurationError
from opero.core.fallback import FallbackPolicy

KEYS = ["a", "b"]


def positional(x: int, key: list[str] = KEYS, z: int = 0) -> Any:
    return x, key, z


def positional_only(x: int, y: int = 5, key: list[str] = KEYS, /) -> Any:
    return x, y, key


def keyword_only(x: int, *, key: list[str] = KEYS) -> Any:
    return x, key


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "expected"),
    [
        (positional, (1,), {}, (1, ["c"], 0)),  # left to its default: goes by position
        (positional, (1, KEYS), {}, (1, ["c"], 0)),  # given by position
        (positional, (1, KEYS, 3), {}, (1, ["c"], 3)),
        (positional, (1,), {"key": KEYS}, (1, ["c"], 0)),  # given by keyword
        (positional, (1,), {"z": 3}, (1, ["c"], 3)),  # default, other keywords kept
        (positional, (), {"x": 1}, (1, ["c"], 0)),  # before it by keyword: keyword
        (positional_only, (1,), {}, (1, 5, ["c"])),  # padded with the defaults before it
        (positional_only, (1, 2, KEYS), {}, (1, 2, ["c"])),
        (keyword_only, (1,), {}, (1, ["c"])),
        (keyword_only, (1,), {"key": KEYS}, (1, ["c"])),
    ],
)
def test_the_candidate_takes_the_parameter_s_place(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    policy = FallbackPolicy.for_function(func, "key")
    assert policy.candidates(args, kwargs) == KEYS
    call_args, call_kwargs = policy.substitute(args, kwargs, "c")
    assert func(*call_args, **call_kwargs) == expected
    assert kwargs.get("key", KEYS) is KEYS  # the caller's keywords are not changed


def test_values_that_are_not_lists_pass_through_and_empty_lists_raise() -> None:
    policy = FallbackPolicy.for_function(positional, "key")
    assert policy.candidates((1, "one-key"), {}) is None
    assert policy.candidates((1,), {"key": None}) is None
    assert policy.candidates((1, ("t",)), {}) == ("t",)
    with pytest.raises(ConfigurationError, match="'key' got an empty list"):
        policy.candidates((1, []), {})


def test_a_default_list_emptied_after_decoration_raises() -> None:
    pool: list[str] = ["a"]

    def func(x: int, key: list[str] = pool) -> int:
        return x

    policy = FallbackPolicy.for_function(func, "key")
    assert policy.candidates((1,), {}) is pool
    pool.clear()
    with pytest.raises(ConfigurationError, match="empty list"):
        policy.candidates((1,), {})


def test_a_pickled_policy_is_rebuilt_with_its_functions() -> None:
    policy = FallbackPolicy.for_function(positional_only, "key", delay=0.5)
    copy = pickle.loads(pickle.dumps(policy))
    assert copy == policy
    assert copy.delay == 0.5
    assert copy.substitute((1,), {}, "c") == ((1, 5, ["c"]), {})
    assert "function" not in repr(copy)  # the per-call functions are no fields


def _star_positional(x: int, key: list[str], /, **extra: Any) -> Any:
    return x, key, extra


def _keyword_only_required(x: int, *, key: list[str]) -> Any:
    return x, key


def _no_list_default(x: int, key: Any = None) -> Any:
    return x, key


def _tuple_default(x: int, key: tuple[str, ...] = ("t", "u")) -> Any:
    return x, key


SHAPES = [
    positional,
    positional_only,
    keyword_only,
    _star_positional,
    _keyword_only_required,
    _no_list_default,
    _tuple_default,
]
VALUES = [KEYS, ("t", "u"), [], "one-key", None, ["only"], 7]
KEYWORDS: list[dict[str, Any]] = [
    {},
    {"key": KEYS},
    {"key": ("t",)},
    {"key": []},
    {"key": "one-key"},
    {"z": 3},
    {"key": KEYS, "z": 3},
    {"x": 1, "key": ["k"]},
]


@pytest.mark.parametrize("func", SHAPES, ids=lambda f: f.__name__)
def test_lead_is_candidates_then_substitute_of_the_first(func: Any) -> None:
    """`lead` is hand-fused for speed: it must give what the two functions give, for every
    placement, value and keyword (or raise the same error)."""
    policy = FallbackPolicy.for_function(func, "key")

    def expected(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            found = policy.candidates(args, kwargs)
        except ConfigurationError:
            return "error"
        if found is None:
            return None, args, kwargs
        return (found, *policy.substitute(args, kwargs, found[0]))

    compared = 0
    for count in range(4):
        for given in itertools.product([*VALUES, 5], repeat=count):
            for keywords in KEYWORDS:
                args, kwargs = tuple(given), dict(keywords)
                try:
                    got = policy.lead(args, kwargs)
                except ConfigurationError:
                    got = "error"
                assert got == expected(args, kwargs), (args, kwargs)
                assert kwargs == keywords  # the caller's keywords are not changed
                compared += 1
    assert compared == 8 * (1 + 8 + 64 + 512)
