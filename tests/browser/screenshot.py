"""Regenerate docs/dashboard.png and docs/dashboard-phone.png: the pictures are taken by the test
``test_dashboard.py::test_screenshots_at_desktop_and_phone_width``, told to write into docs/.

    python -m tests.browser.screenshot

The test fills a server's history with an hour of the ``--demo`` stream (with country
enrichment on), adds a few live events and photographs the page at 1280x800 and at 390x844.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from netsentinel_websocket.demo import demo_items

#: Where the test writes the pictures when this is set (otherwise into its tmp_path).
OUTPUT_ENV = "NETSENTINEL_SCREENSHOTS_DIR"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def backlog(count: int = 600, span: float = 3600.0, seed: int = 20) -> Iterator[dict[str, Any]]:
    """``count`` demo records spread over the last ``span`` seconds, oldest first (a burst now
    and then, as an attack campaign looks)."""
    rng = random.Random(seed)
    items = demo_items(rng)
    now = datetime.now(timezone.utc)
    ages = sorted((rng.betavariate(0.8, 1.6) * span for _ in range(count)), reverse=True)
    for age in ages:
        item = next(items)
        when = now - timedelta(seconds=age)
        if "logtype" in item:  # an OpenCanary record: its own clock fields
            item["utc_time"] = item["local_time"] = when.strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            item["timestamp"] = when.timestamp()
        yield item


def main() -> int:
    import pytest

    os.environ[OUTPUT_ENV] = str(DOCS)
    here = Path(__file__).with_name("test_dashboard.py")
    return pytest.main(
        ["-q", "-p", "no:cacheprovider", f"{here}::test_screenshots_at_desktop_and_phone_width"]
    )


if __name__ == "__main__":
    sys.exit(main())
