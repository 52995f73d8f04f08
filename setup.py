"""What setup.cfg cannot say: the package description is README.md with its relative links
made plain text. An index page has no docs/ beside it, and no repository address is published
to point them at, so ``[text](docs/x.md)`` becomes ``text (`docs/x.md`)`` (the file is in the
source distribution) and the dashboard picture a line naming its file."""

import re
from pathlib import Path

from setuptools import setup

# [text](target) or ![alt](target) whose target is neither absolute nor an anchor
RELATIVE_LINK = re.compile(r"(!?)\[([^\]]*)\]\((?![a-z]+://|#|mailto:)([^)\s]+)\)")


def description(readme: str) -> str:
    """README.md without relative links."""

    def plain(match: re.Match[str]) -> str:
        picture, text, target = match.groups()
        if picture:
            return f"*(picture: `{target}` in the source distribution)*"
        return text if text.strip("`") == target else f"{text} (`{target}`)"

    return RELATIVE_LINK.sub(plain, readme)


setup(
    long_description=description(Path(__file__).with_name("README.md").read_text("utf-8")),
    long_description_content_type="text/markdown",
)
