"""Print one of README.md's commands, so CI and the tests run exactly what a new user copies.

Usage: ``python3 tools/readme_command.py run|test [README]``: the shell command of the code block
that follows README's "**Run it**" or "**Test it**" paragraph. Exit 1 when there is none (the
README changed shape: CI must not silently run something else).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LEADS = {"run": "**Run it**", "test": "**Test it**"}
BLOCK = re.compile(r"```sh\n(?P<command>.+?)\n```", re.DOTALL)


def readme_command(text: str, which: str) -> str:
    """The command of the first ``sh`` block after the lead-in paragraph of ``which``."""
    start = text.find(LEADS[which])
    match = BLOCK.search(text, start) if start >= 0 else None
    if match is None:
        raise LookupError(f"README.md has no sh block after {LEADS[which]}")
    return match["command"].strip()


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in LEADS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    readme = Path(argv[1] if len(argv) == 2 else Path(__file__).parent.parent / "README.md")
    try:
        print(readme_command(readme.read_text(encoding="utf-8"), argv[0]))
    except LookupError as exc:
        print(f"readme_command: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
