"""Browser fixtures: headless Chromium through Playwright, and a ``serve`` subprocess that a
test can stop and start again on the same ports (where the page expects it).

Without Playwright or Chromium the tests are skipped with the reason printed at the end of the
run; ``NETSENTINEL_REQUIRE_BROWSER=1`` (CI) turns that into a failure.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import ALL_SCOPES, base_config, make_token

CHROMIUM = os.environ.get("NETSENTINEL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_skipped: list[str] = []


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (set NETSENTINEL_CHROMIUM)"
    return None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        terminalreporter.write_line(f"browser tests skipped: {_skipped[0]}", yellow=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module (module scope keeps Playwright's own event loop from
    living alongside the Tornado loops of other modules)."""
    reason = missing_browser()
    if reason is not None:
        if os.environ.get("NETSENTINEL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required (NETSENTINEL_REQUIRE_BROWSER=1): {reason}")
        _skipped.append(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``new_page(width=1280, height=720)``: a page in a fresh context (own sessionStorage);
    a JavaScript error or a Content-Security-Policy violation on any page fails the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(width: int = 1280, height: int = 720) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(5000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


class Feed:
    """A ``serve`` subprocess that can be stopped and started again on the same ports."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc

    @property
    def dashboard(self) -> str:
        return f"{self.proc.http}/ws/dashboard"

    def publish(self, *events: dict[str, Any]) -> None:
        """Events over the TCP ingest, in one write (the server coalesces what it can)."""
        self.proc.send_lines([orjson.dumps(e) for e in events])

    def history(self, channel: str) -> list[dict[str, Any]]:
        """The event messages ``/ws/history/<channel>`` holds now (newest 1000)."""
        request = urllib.request.Request(
            f"{self.proc.http}/ws/history/{channel}?limit=1000",
            headers={"Authorization": f"Bearer {make_token('reader', 'channel:*')}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return orjson.loads(response.read())["events"]

    def subscribers(self) -> dict[str, int]:
        """Subscribers per channel as the server counts them (``/ws/stats``)."""
        request = urllib.request.Request(
            f"{self.proc.http}/ws/stats",
            headers={"Authorization": f"Bearer {make_token('stats', 'admin')}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return orjson.loads(response.read())["subscribers"]

    def stop(self) -> None:
        self.proc.stop()

    def restart(self) -> None:
        """The same process settings again, on the same ports."""
        self.proc.start()


@pytest.fixture
def feed(browser: Any, serve_process: Callable[..., Any]) -> Callable[..., Feed]:
    """``feed(dev_token=True, **config)``: a runner whose dashboard gets a token from the page
    (as with ``serve --dev``) unless ``dev_token`` is false. (It asks for ``browser`` first so
    a missing browser skips before any server starts.)"""

    def start(dev_token: bool = True, **overrides: Any) -> Feed:
        if dev_token:
            overrides["websocket__dashboard__token"] = make_token("analyst", ALL_SCOPES)
        return Feed(serve_process(base_config(**overrides)))

    return start


def record_messages(page: Any, direction: str) -> Callable[[], list[dict[str, Any]]]:
    """A function giving every message the page's WebSockets sent (``direction="framesent"``)
    or received (``"framereceived"``) so far; a received frame may hold several, one per line.

    It makes a round trip to the page first: Playwright's sync API dispatches events only
    during its own calls, so a plain polling loop would never see new frames."""
    messages: list[dict[str, Any]] = []

    def record(data: str | bytes) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        messages.extend(orjson.loads(line) for line in text.split("\n"))

    page.on("websocket", lambda ws: ws.on(direction, record))

    def so_far() -> list[dict[str, Any]]:
        page.evaluate("0")
        return messages

    return so_far


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)
