"""The release users get: a 3.0.0 pre-release, versioned in one place, that installs as a wheel.

``pip install -U opero`` must never take a user of the 2.x line (last: 2.7.5) *down*
to this rewrite's code, so the version has to sort above 2.7.5; until the API settles
it stays a pre-release of 3.0.0, which pip installs only when asked (``--pre``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import opero

ROOT = Path(__file__).resolve().parents[1]
PIP = (sys.executable, "-m", "pip")
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_version_is_a_pre_release_of_3_0_0_above_the_2x_line() -> None:
    current = Version(opero.__version__)
    assert current.release == (3, 0, 0)
    assert current.is_prerelease
    assert Version("2.7.5") < current < Version("3.0.0")


def test_the_version_is_written_in_one_place() -> None:
    # pyproject.toml takes the version from src/opero/__init__.py (hatch's dynamic
    # version) and states none of its own; the installed metadata agrees with it.
    project = PYPROJECT.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r"^dynamic\s*=\s*\[\s*\"version\"\s*\]", project, re.MULTILINE)
    assert not re.search(r"^version\s*=", project, re.MULTILINE)
    assert re.search(
        r'^\[tool\.hatch\.version\]\npath = "src/opero/__init__\.py"$', PYPROJECT, re.MULTILINE
    )
    source = (ROOT / "src" / "opero" / "__init__.py").read_text(encoding="utf-8")
    written = re.findall(r'^__version__ = "([^"]+)"$', source, re.MULTILINE)
    assert written == [opero.__version__]
    assert version("opero") == opero.__version__, (
        "the installed metadata is stale: run `pip install -e .` again"
    )


def _metadata(wheel: Path) -> tuple[str, list[Requirement]]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode("utf-8"))
    return message["Version"], [Requirement(r) for r in message.get_all("Requires-Dist") or []]


@pytest.mark.timeout(180)
def test_the_wheel_installs_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    # Built offline with the project's own backend (hatchling is in the test extra),
    # installed with no index into a virtualenv that has nothing else, then run.
    dist = tmp_path / "dist"
    offline = ("--no-deps", "--no-build-isolation", "--no-index")
    subprocess.run(
        [*PIP, "wheel", "-q", *offline, "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=150,
    )
    (wheel,) = dist.glob("opero-*.whl")
    assert wheel.name == f"opero-{opero.__version__}-py3-none-any.whl"
    wheel_version, requires = _metadata(wheel)
    assert wheel_version == opero.__version__
    core = {r.name for r in requires if r.marker is None}
    assert "tenacity" not in core, "tenacity is only needed with wait=: it is an extra"
    assert "platformdirs" not in core
    for extra in ("tenacity", "all", "test"):
        assert any(
            r.name == "tenacity" and r.marker is not None and r.marker.evaluate({"extra": extra})
            for r in requires
        ), f"opero[{extra}] does not bring tenacity"

    env = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env)
    bindir = env / ("Scripts" if sys.platform == "win32" else "bin")
    python = bindir / "python"
    subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-index", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Nothing of this interpreter's path leaks in (CI runs some tests with PYTHONPATH set).
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    shown = subprocess.run(
        [str(bindir / "opero"), "--version"], capture_output=True, text=True, check=True, env=clean
    )
    assert shown.stdout.strip() == f"opero {opero.__version__}"
    imported = subprocess.run(
        [str(python), "-c", "import opero, sys; print(opero.__version__, opero.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=clean,
    )
    installed_version, location = imported.stdout.split()
    assert installed_version == opero.__version__
    assert Path(location).is_relative_to(env), "the fresh virtualenv imported the source tree"
