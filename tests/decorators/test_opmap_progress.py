"""@opmap ``progress``: a labelled tqdm bar on a terminal, at most one summary line elsewhere.

``progress=None`` (the default) follows tqdm's ``disable=None``: a bar when
stderr is a terminal, nothing otherwise (CI logs, a library's caller, pytest).
``progress=True`` also asks for one summary line when stderr is not a terminal;
``progress=False`` and ``TQDM_DISABLE`` print nothing at all.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opmap_helpers import MODES, afail_on_three, asquare, fail_on_three, pick, run, square

from opero import ConfigurationError, opmap
from terminals import run_in_terminal

#: The summary line: label, items, failures, seconds.
SUMMARY = r"(\w+): (?:(\d+) of )?(\d+) items?, (\d+) failed, \d+\.\d\d s\n"

#: A child that maps five items and prints the results to stdout.
CHILD = """
import asyncio, json, sys
from opero import opmap

def square(x):
    return x * x

async def asquare(x):
    return x * x

mode, settings = sys.argv[1], json.loads(sys.argv[2])
mapped = opmap(mode=mode, workers=2, **settings)(asquare if mode == "async" else square)
result = mapped(range(5))
print(asyncio.run(result) if asyncio.iscoroutine(result) else result)
"""


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the bar of every mode can be read back."""

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def on_a_terminal() -> Iterator[Terminal]:
    """``sys.stderr`` inside the test's body: pytest sets its own again after the fixtures."""
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(Terminal()) as screen:
        patch.delenv("TQDM_DISABLE", raising=False)
        yield screen


def child(*settings: dict[str, Any], mode: str = "thread") -> list[str]:
    return ["-c", CHILD, mode, json.dumps({k: v for s in settings for k, v in s.items()})]


# Not a terminal: pytest's capture, a CI log, a pipe.


@pytest.mark.parametrize("mode", MODES)
def test_default_writes_nothing_when_stderr_is_not_a_terminal(
    mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    mapped = opmap(mode=mode, workers=2)(pick(mode, square, asquare))
    assert run(mapped, range(5)) == [0, 1, 4, 9, 16]
    assert capfd.readouterr() == ("", "")


def test_default_writes_nothing_to_a_piped_stderr() -> None:
    """The case of the issue: 441 bytes of ``\\r`` frames in a log for one small map."""
    done = subprocess.run(
        [sys.executable, *child({})], capture_output=True, text=True, timeout=50, check=True
    )
    assert done.stdout == "[0, 1, 4, 9, 16]\n"
    assert done.stderr == ""


@pytest.mark.parametrize("mode", MODES)
def test_progress_true_writes_one_summary_line_when_not_a_terminal(
    mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    mapped = opmap(mode=mode, workers=2, progress=True)(pick(mode, square, asquare))
    assert run(mapped, range(5)) == [0, 1, 4, 9, 16]
    out, err = capfd.readouterr()
    assert out == ""
    assert "\r" not in err
    found = re.fullmatch(SUMMARY, err)
    assert found is not None, err
    assert found.groups() == (mapped.__name__, None, "5", "0")


@pytest.mark.parametrize("mode", MODES)
def test_summary_line_counts_failures(
    mode: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    func = pick(mode, fail_on_three, afail_on_three)
    mapped = opmap(mode=mode, workers=2, progress=True, retries=0)(func)
    results = run(mapped, [1, 2, 3, 4], str(tmp_path / "calls.txt"))
    assert results[:2] == [1, 4]
    found = re.fullmatch(SUMMARY, capfd.readouterr().err)
    assert found is not None
    assert found.groups() == (func.__name__, None, "4", "2")


def test_summary_line_of_an_unsized_input_and_of_one_item(
    capfd: pytest.CaptureFixture[str],
) -> None:
    mapped = opmap(workers=2, progress=True)(square)
    assert mapped(x for x in range(3)) == [0, 1, 4]
    assert mapped([3]) == [9]
    lines = capfd.readouterr().err.splitlines(keepends=True)
    assert [re.fullmatch(SUMMARY, line).groups() for line in lines] == [  # type: ignore[union-attr]
        ("square", None, "3", "0"),
        ("square", None, "1", "0"),
    ]
    assert " 1 item," in lines[1]


def test_summary_line_of_an_abandoned_imap_says_how_far_it_got(
    capfd: pytest.CaptureFixture[str],
) -> None:
    mapped = opmap(workers=2, chunk_size=1, progress=True)(square)
    iterator = mapped.imap(range(100))
    assert next(iterator) == 0
    assert capfd.readouterr().err == ""  # nothing until the map ends
    iterator.close()
    found = re.fullmatch(SUMMARY, capfd.readouterr().err)
    assert found is not None
    assert found[2] is not None
    assert 1 <= int(found[2]) < 100
    assert found[3] == "100"


@pytest.mark.parametrize("mode", MODES)
def test_progress_false_writes_nothing(mode: str, capfd: pytest.CaptureFixture[str]) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, square, asquare))
    assert run(mapped, range(5)) == [0, 1, 4, 9, 16]
    assert capfd.readouterr() == ("", "")


def test_tqdm_disable_silences_the_summary_line_too() -> None:
    done = subprocess.run(
        [sys.executable, *child({"progress": True})],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert done.stdout == "[0, 1, 4, 9, 16]\n"
    assert done.stderr == ""


# A terminal: the bar, labelled with the function's name.


@pytest.mark.parametrize("mode", ["thread", "async"])
@pytest.mark.parametrize("progress", [{}, {"progress": True}])
def test_bar_is_drawn_on_a_real_terminal_with_the_function_name(
    mode: str, progress: dict[str, Any]
) -> None:
    screen = run_in_terminal(child(progress, mode=mode))
    assert screen.code == 0
    assert screen.stdout == "[0, 1, 4, 9, 16]\n"
    name = "asquare" if mode == "async" else "square"
    assert re.search(rf"\r{name}: 100%\|\S+\| 5/5 \[", screen.terminal), screen.terminal
    assert not re.search(r"\d+ items?, \d+ failed", screen.terminal)  # the bar, not a summary


@pytest.mark.parametrize("settings", [{"progress": False}, {}, {"progress": True}])
def test_nothing_on_a_terminal_when_off_or_tqdm_disable(settings: dict[str, Any]) -> None:
    env = {} if settings.get("progress") is False else {"TQDM_DISABLE": "1"}
    screen = run_in_terminal(child(settings), env=env)
    assert screen.code == 0
    assert screen.stdout == "[0, 1, 4, 9, 16]\n"
    assert screen.terminal == ""


@pytest.mark.parametrize("mode", MODES)
def test_bar_of_every_mode_is_labelled_and_counts_failures(mode: str, tmp_path: Path) -> None:
    func = pick(mode, fail_on_three, afail_on_three)
    mapped = opmap(mode=mode, workers=2, retries=0)(func)
    with on_a_terminal() as terminal:
        run(mapped, [1, 2, 3, 4], str(tmp_path / "calls.txt"))
    drawn = terminal.getvalue()
    assert f"\r{func.__name__}: 100%" in drawn
    assert "4/4" in drawn
    assert "failed=2" in drawn


def test_bar_is_closed_when_imap_is_abandoned() -> None:
    from tqdm import tqdm  # noqa: PLC0415

    mapped = opmap(workers=2, chunk_size=1)(square)
    with on_a_terminal() as terminal:
        iterator = mapped.imap(range(100))
        assert next(iterator) == 0
        assert len(tqdm._instances) == 1  # type: ignore[attr-defined]
        iterator.close()
    assert len(tqdm._instances) == 0  # type: ignore[attr-defined]
    assert "square:" in terminal.getvalue()


# The setting itself.


def test_progress_defaults_to_none() -> None:
    mapped = opmap(workers=2)(square)
    assert mapped.__opmap__.settings["progress"] is None


@pytest.mark.parametrize("value", ["yes", 1, 0])
def test_progress_other_than_none_true_or_false_is_rejected(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"progress must be None, True or False"):
        opmap(progress=value)(square)  # type: ignore[arg-type]
