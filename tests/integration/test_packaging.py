"""``python -m build`` from a fresh copy: the sdist carries the docs, examples, changelog and
licence; the wheel the dashboard's files; the package description has no link that breaks away
from the repository; and setuptools has nothing to warn about."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from ..fresh import fresh_copy


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, str]:
    """(sdist, wheel, build output)."""
    project = fresh_copy(tmp_path_factory.mktemp("project"))
    dist = project / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(project)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return next(dist.glob("*.tar.gz")), next(dist.glob("*.whl")), result.stdout + result.stderr


def test_the_sdist_is_the_whole_project(built):
    sdist, _, _ = built
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = {
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "docs/configuration.md",
        "docs/dashboard.png",
        "examples/notifier.py",
        "tools/readme_command.py",
        "tox.ini",
        "toxfile.py",
        "tests/conftest.py",
    }
    assert expected <= names, expected - names
    assert not any("__pycache__" in name for name in names)


def test_the_wheel_holds_the_dashboard_and_the_licence(built):
    _, wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "netsentinel_websocket/static/dashboard.html" in names
    assert "netsentinel_websocket/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_the_description_has_no_relative_link(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        text = whl.read(meta).decode()
    assert "License: BSD-3-Clause" in text
    description = text.split("\n\n", 1)[1]
    assert "](docs/" not in description and "![" not in description
    assert "NetSentinel (`docs/architecture.md`)" in description
    assert "*(picture: `docs/dashboard.png` in the source distribution)*" in description


def test_setuptools_has_nothing_to_warn_about(built):
    _, _, output = built
    assert "is absent from the `packages` configuration" not in output
    assert "SetuptoolsDeprecationWarning" not in output
