"""Real Chromium's EventSource on ``/ws/sse``: live delivery, and the automatic reconnect
sending ``Last-Event-ID`` (after a restart of the memory broker the server answers it with a
``gap``, which only a reconnect carrying the cursor can get)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import wait_until
from tests.conftest import event, make_token

pytestmark = pytest.mark.browser

OPEN = """([path]) => {
  window.seen = {events: [], gaps: [], opens: 0};
  const source = new EventSource(path);
  source.onopen = () => { window.seen.opens += 1; };
  source.addEventListener('event', (e) => window.seen.events.push(
    {msg: JSON.parse(e.data), id: e.lastEventId}));
  source.addEventListener('gap', (e) => window.seen.gaps.push(JSON.parse(e.data)));
}"""


def seen(page, key):
    return page.evaluate(f"window.seen.{key}")


def test_event_source_receives_live_events_and_reconnects_with_last_event_id(feed, new_page):
    server = feed(dev_token=False, websocket__auth__allow_query_token=True)
    page = new_page()
    page.goto(server.dashboard)
    token = make_token()
    page.evaluate(OPEN, [f"/ws/sse?channels=events&token={token}"])
    wait_until(lambda: seen(page, "opens") == 1, what="the stream to open")
    wait_until(lambda: server.subscribers().get("events") == 1, what="the reader to join")

    server.publish(*(event(n) for n in range(3)))
    got = wait_until(lambda: len(seen(page, "events")) == 3 and seen(page, "events"))
    assert [e["msg"]["event"]["data"]["n"] for e in got] == [0, 1, 2]
    assert all(e["id"] for e in got)

    server.stop()  # SIGTERM: the stream ends cleanly; EventSource reconnects by itself
    server.restart()
    wait_until(lambda: seen(page, "opens") >= 2, timeout=15, what="the automatic reconnect")
    gaps = wait_until(lambda: seen(page, "gaps"), what="the gap of the new epoch")
    assert gaps[0]["from"]["offset"] == 3
    wait_until(lambda: server.subscribers().get("events") == 1, what="the reader to join again")
    server.publish(event(10))
    wait_until(lambda: len(seen(page, "events")) == 4)
    assert seen(page, "events")[3]["msg"]["offset"] == 1
    assert token not in server.proc.stderr_text()  # the query token never reaches a log
