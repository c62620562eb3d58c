"""@opmap ``progress``: a tqdm bar on stderr when asked for, and silence otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from opmap_helpers import MODES, afail_on_three, asquare, fail_on_three, pick, run, square

from opero import opmap


@pytest.mark.parametrize("mode", MODES)
def test_progress_bar_is_written_to_stderr(mode: str, capfd: pytest.CaptureFixture[str]) -> None:
    mapped = opmap(mode=mode, workers=2, progress=True)(pick(mode, square, asquare))
    assert run(mapped, range(5)) == [0, 1, 4, 9, 16]
    out, err = capfd.readouterr()
    assert out == ""
    assert "5/5" in err
    assert "100%" in err


@pytest.mark.parametrize("mode", MODES)
def test_progress_off_prints_nothing(mode: str, capfd: pytest.CaptureFixture[str]) -> None:
    mapped = opmap(mode=mode, workers=2, progress=False)(pick(mode, square, asquare))
    assert run(mapped, range(5)) == [0, 1, 4, 9, 16]
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("mode", MODES)
def test_progress_bar_counts_failures(
    mode: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    mapped = opmap(mode=mode, workers=2, progress=True, retries=0)(
        pick(mode, fail_on_three, afail_on_three)
    )
    results = run(mapped, [1, 2, 3, 4], str(tmp_path / "calls.txt"))
    assert results[:2] == [1, 4]
    _, err = capfd.readouterr()
    assert "4/4" in err
    assert "failed=2" in err


def test_progress_bar_of_an_unsized_input_counts_items(capfd: pytest.CaptureFixture[str]) -> None:
    mapped = opmap(workers=2, progress=True)(square)
    assert mapped(x for x in range(3)) == [0, 1, 4]
    _, err = capfd.readouterr()
    assert "3" in err
    assert "item" in err


def test_progress_bar_is_closed_when_imap_is_abandoned(capfd: pytest.CaptureFixture[str]) -> None:
    from tqdm import tqdm  # noqa: PLC0415

    mapped = opmap(workers=2, chunk_size=1, progress=True)(square)
    iterator = mapped.imap(range(100))
    assert next(iterator) == 0
    assert len(tqdm._instances) == 1  # type: ignore[attr-defined]
    iterator.close()
    assert len(tqdm._instances) == 0  # type: ignore[attr-defined]
    assert capfd.readouterr().err
