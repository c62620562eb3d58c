"""The collector pairs a Python block with the ``<!-- output -->`` block that shows its output."""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_blocks import collect, printed
from test_examples import EXAMPLES, check_output

PAGE = """\
# A page

```python
print("a  ")
print("b")
```

It prints:

<!-- output -->
```text
a
b
```

```python
print("not shown")
```

```text
not an output block: no marker
```

- a list item

    ```python
    print("indented")
    ```

    <!-- output -->
    ```
    indented
    ```
"""


def test_an_output_block_belongs_to_the_python_block_above_it(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE, encoding="utf-8")
    first, second, indented = collect(page)
    assert first.output == "a\nb\n"
    assert second.output is None
    assert indented.output == "indented\n"


def test_an_output_marker_without_a_fence_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nprint(1)\n```\n\n<!-- output -->\ntext\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must come right above a fence"):
        collect(page)


def test_other_printed_lines_fail_the_example(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE, encoding="utf-8")
    first = collect(page)[0]
    check_output(first, "a\nb   \n\n")  # trailing spaces and blank lines aside
    with pytest.raises(pytest.fail.Exception, match=r"(?s)printed other lines.*\+c"):
        check_output(first, "a\nc\n")
    assert printed(" x \n\n") == [" x"]


def test_the_key_pools_page_shows_what_its_worked_example_prints() -> None:
    shown = [e for e in EXAMPLES if e.path.name == "key-pools.md" and e.output is not None]
    assert shown, "docs/key-pools.md shows no <!-- output --> of its worked example"
    worked = shown[0]
    assert worked.output is not None
    assert "sk-" in worked.source  # its fake keys...
    assert "sk-" not in worked.output  # ...never in the log lines or the table
    assert "candidate 0 breaker closed -> open" in worked.output
