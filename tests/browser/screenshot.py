"""Regenerate docs/dashboard.png: the dashboard at 1280x720 with the ``--demo`` stream.

    python -m tests.browser.screenshot [OUTPUT] [--seconds 20]

Runs ``serve --demo`` on free ports, lets the table and the rate plot fill for a while and takes
the picture.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import ALL_SCOPES, ServeProcess, base_config, make_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="docs/dashboard.png")
    parser.add_argument("--seconds", type=float, default=20, help="how long the demo runs first")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    config = base_config(websocket__dashboard__token=make_token("soc-analyst", ALL_SCOPES))
    with tempfile.TemporaryDirectory() as tmp:
        server = ServeProcess(config, Path(tmp), "--demo").start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"{server.http}/ws/dashboard")
                page.locator('#state[data-state="connected"]').wait_for()
                time.sleep(args.seconds)
                page.screenshot(path=args.output)
                browser.close()
        finally:
            server.stop()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
