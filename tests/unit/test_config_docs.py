"""docs/configuration.md: every "see below" of the keys table leads to a section that exists,
and the enforced minimums are in the rows."""

from __future__ import annotations

import re
from pathlib import Path

from netsentinel_websocket.config import MIN_SECRET_CHARS, keys_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_see_below_link_has_its_section():
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", DOC.read_text(), re.M)}
    links = re.findall(r"\[see below\]\(#([\w-]+)\)", keys_markdown())
    assert len(links) == 3  # redact, channels, routes
    assert set(links) <= anchors, set(links) - anchors


def test_the_enforced_minimums_are_in_the_table():
    rows = {row.split("|")[1].strip(" `"): row for row in keys_markdown().splitlines()[2:]}
    assert f"at least {MIN_SECRET_CHARS} characters" in rows["websocket.auth.jwt.secret"]
    assert "From 4096 to" in rows["websocket.queue.max_bytes"]
    assert "From 1024 to" in rows["websocket.ingest.max_line_bytes"]
