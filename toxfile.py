"""tox's project plugin (tox 4 loads ``toxfile.py`` from beside tox.ini by itself).

Why: tox finds interpreters on PATH, and on a pyenv machine only the active version is there
(the other versions' shims refuse to run), so ``tox -p auto`` skipped py310/py312/py313 and
still said "congratulations". This plugin offers tox every installed pyenv CPython the envlist
names (``$PYENV_ROOT``, default ``~/.pyenv``). Without pyenv it changes nothing. tox.ini makes
each environment print the Python it runs on, and tox prints why one was skipped.
"""

from __future__ import annotations

import os
import re
from typing import Any

from tox.plugin import impl

PY_ENV = re.compile(r"py3(\d+)")
CPYTHON_DIR = re.compile(r"3\.(\d+)\.(\d+)")


def pyenv_pythons(root: str, minors: set[int]) -> list[str]:
    """The newest installed CPython of each wanted ``3.minor`` under a pyenv root."""
    newest: dict[int, tuple[int, str]] = {}
    try:
        names = os.listdir(os.path.join(root, "versions"))
    except OSError:
        return []
    for name in names:
        match = CPYTHON_DIR.fullmatch(name)
        if match is None or int(match[1]) not in minors:
            continue
        minor, patch = int(match[1]), int(match[2])
        exe = os.path.join(root, "versions", name, "bin", f"python3.{minor}")
        if os.access(exe, os.X_OK) and patch >= newest.get(minor, (-1, ""))[0]:
            newest[minor] = (patch, exe)
    return [exe for _, (_, exe) in sorted(newest.items())]


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:
    minors = {int(m[1]) for name in core_conf["env_list"] if (m := PY_ENV.fullmatch(name))}
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = pyenv_pythons(root, minors)
    state.conf.options.discover = [*state.conf.options.discover, *found]
