"""Every ```python block of README.md and docs/*.md runs, as written.

Each block is one test, named ``<file>:<line>`` after the block's first line of code,
so a failure names the block.  A block runs in a fresh namespace in this process,
or as a script of its own (``python example.py``) when it starts a process pool or
tests ``__name__ == "__main__"`` (or is marked ``<!-- own-process -->``): worker
processes import that script afresh, as they would import the reader's.

Markers, each an HTML comment on its own line right before the fence:

* ``<!-- no-run: reason -->``: the block is shown, never run (there should be few).
* ``<!-- own-process -->``: run the block as a script of its own.
* ``<!-- pytest -->``: the block is a test module: run it with pytest, which must pass.

The next fenced block after a Python block (prose between is fine), if it is marked
``<!-- output -->`` on the line above its fence, is what the Python block prints:
the test compares it with the block's standard output, line by line (trailing
spaces and blank lines at the end aside), so a page never shows output its code
no longer prints.

Network: URLs ``https://<name>.example.com`` are rewritten to a stub server on
127.0.0.1 (``docs_stub_server.py`` says how each host answers), and while an example
runs every lookup or connection to anything but the local machine is refused.
Examples that mention redis need a redis-server on 127.0.0.1:6379: without one they
are skipped locally and fail in CI.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import os
import re
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_blocks import ROOT, Example, collect, printed
from docs_network_guard import local_only
from docs_stub_server import StubServer, rewrite_urls

from opero.core import clock as opero_clock
from redis_server import redis_answers

HERE = Path(__file__).resolve().parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Seconds one example may take when it runs as a script of its own.
SCRIPT_TIMEOUT = 45

_USES_REDIS = re.compile(r"redis")


EXAMPLES = [example for page in PAGES for example in collect(page)]


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _opero_logger_restored() -> Iterator[None]:
    """Examples may call configure_logging(); the next test sees the logger as it was."""
    logger = logging.getLogger("opero")
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            handler.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)


def _run_here(example: Example, source: str) -> str:
    """Run ``source`` in this process; what it printed."""
    # The code keeps its page's line numbers, so a traceback points into the page.
    code = compile("\n" * (example.line - 1) + source, str(example.path), "exec")
    module = types.ModuleType("docs_example")
    module.__file__ = str(example.path)
    sys.modules["docs_example"] = module
    out = io.StringIO()
    try:
        with local_only(), contextlib.redirect_stdout(out):
            exec(code, module.__dict__)
    finally:
        del sys.modules["docs_example"]
        sys.stdout.write(out.getvalue())  # pytest shows it if the test fails
    assert isinstance(opero_clock.current(), opero_clock.SystemClock), (
        "the example left a fake clock installed"
    )
    return out.getvalue()


def _run_as_script(example: Example, source: str, directory: Path) -> str:
    """Run ``source`` as a script (or a pytest module) of its own; what it printed."""
    # Named like a test module, so the same file serves `python example.py` and pytest.
    script = directory / "test_example.py"
    script.write_text("\n" * (example.line - 1) + source, encoding="utf-8")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    guard = str(HERE / "docs_network_guard.py")
    if example.how == "pytest":
        # Only pytest's own plugins: the block must not depend on what else is installed.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        options = ["-q", "-p", "no:cacheprovider", "-W", "error", "--rootdir", str(directory)]
        command = [sys.executable, guard, "-m", "pytest", *options, str(script)]
    else:
        command = [sys.executable, "-W", "error", guard, str(script)]
    try:
        done = subprocess.run(
            command,
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{example.name} did not finish within {SCRIPT_TIMEOUT} s\n{exc.stderr}")
    if done.returncode != 0:
        pytest.fail(
            f"{example.name} exited with {done.returncode} "
            f"(line numbers are the page's)\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    return done.stdout


def check_output(example: Example, stdout: str) -> None:
    """Fail if ``example`` has an ``<!-- output -->`` block and printed something else."""
    if example.output is None:
        return
    expected, actual = printed(example.output), printed(stdout)
    if expected != actual:
        diff = "\n".join(difflib.unified_diff(expected, actual, "page", "printed", lineterm=""))
        pytest.fail(f"{example.name} printed other lines than its page shows:\n{diff}")


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_example_runs(
    example: Example,
    stub: StubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if example.skip is not None:
        pytest.skip(f"marked no-run: {example.skip}")
    if _USES_REDIS.search(example.source) and not redis_answers():
        if os.environ.get("CI"):
            pytest.fail("CI is set but no redis-server answers on 127.0.0.1:6379")
        pytest.skip("needs a redis-server on 127.0.0.1:6379")
    stub.reset()
    source = rewrite_urls(example.source, stub.base_url)
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    if example.how in ("script", "pytest"):
        stdout = _run_as_script(example, source, tmp_path)
    else:
        stdout = _run_here(example, source)
    check_output(example, stdout)


def test_the_collector_finds_blocks_in_every_page() -> None:
    # A page whose blocks silently stopped being collected would stop being tested.
    counted = {page.name: len(collect(page)) for page in PAGES}
    assert counted["README.md"] >= 5
    pages = ("index.md", "basic-usage.md", "parallel-maps.md", "caching.md")
    pages += ("talking-to-http-apis.md", "key-pools.md")
    for name in pages:
        assert counted.get(name, 0) >= 2, f"docs/{name} has {counted.get(name, 0)} blocks"
    skipped = [example.name for example in EXAMPLES if example.skip is not None]
    assert len(skipped) <= 5, f"too many no-run blocks: {skipped}"


def _performance_rows(text: str) -> list[str]:
    """The table rows of the section that starts with ``## Performance``."""
    section = text.split("\n## Performance", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("| ")]


def test_the_performance_page_has_the_readme_tables() -> None:
    # docs/performance.md repeats the README's measurements; they must not drift apart.
    readme = _performance_rows((ROOT / "README.md").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    missing = [row for row in readme if row not in page]
    assert not missing, (
        "docs/performance.md lacks these rows of README.md's Performance tables "
        "(copy them over):\n" + "\n".join(missing)
    )


def test_examples_cannot_reach_the_network() -> None:
    with local_only():
        with pytest.raises(ConnectionRefusedError):
            socket.getaddrinfo("api.example.com", 443)
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("192.0.2.1", 80))  # TEST-NET-1: refused before any packet
        assert socket.getaddrinfo("127.0.0.1", 6379)
    assert "api.example.com" not in rewrite_urls("https://api.example.com/users/1", "http://x")


def test_example_scripts_cannot_reach_the_network(tmp_path: Path) -> None:
    script = tmp_path / "reach_out.py"
    script.write_text('import socket\nsocket.create_connection(("192.0.2.1", 80), timeout=1)\n')
    done = subprocess.run(
        [sys.executable, str(HERE / "docs_network_guard.py"), str(script)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    assert done.returncode != 0
    assert "docs examples may not reach the network" in done.stderr
