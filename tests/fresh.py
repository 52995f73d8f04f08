"""A fresh copy of the project, as ``git clone`` of the working tree would give it: the files
git tracks or would track (ignored ones left out), or, outside a git checkout (an unpacked
sdist), every file but build output and environments."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = shutil.ignore_patterns(
    ".git", ".tox", ".venv", ".ci-venv", "build", "dist", "*.egg-info", "__pycache__", "mutants"
)


def fresh_copy(dest: Path) -> Path:
    """``dest`` holding the project's files; returns it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    if listed.returncode != 0:  # not a git checkout
        shutil.copytree(ROOT, dest, ignore=LEFT_OUT)
        return dest
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():  # a deleted, not yet committed file is listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest
