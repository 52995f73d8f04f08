"""static/client.js on its own, in headless Chromium against a real ``serve`` subprocess."""

from __future__ import annotations

import pytest

from tests.browser.conftest import record_messages, wait_until
from tests.conftest import event, make_token

pytestmark = pytest.mark.browser

# A client that records everything it reports in window.seen; fast back-off for the tests.
START = """([url, token, channels]) => {
  window.seen = {states: [], events: [], gaps: []};
  window.client = new NetSentinelClient({
    url, token, channels, minDelay: 100, maxDelay: 400,
    onState: (state, detail) => window.seen.states.push({state, ...detail, welcome: undefined}),
    onEvent: (msg) => window.seen.events.push(msg),
    onGap: (msg) => window.seen.gaps.push(msg),
  }).start();
}"""


def start_client(page, feed, token, channels=("events",)):
    """The dashboard page (without a dev token it only asks for one) loads client.js."""
    page.goto(feed.dashboard)
    sent = record_messages(page, "framesent")
    page.evaluate(START, [feed.proc.url, token, list(channels) if channels else None])
    return sent


def seen(page, key):
    return page.evaluate(f"window.seen.{key}")


def states(page):
    return [s["state"] for s in seen(page, "states")]


def test_receives_coalesced_events_and_resumes_after_a_restart(feed, new_page):
    f = feed(dev_token=False)
    page = new_page()
    sent = start_client(page, f, make_token("script", "channel:events"))
    wait_until(lambda: "connected" in states(page), what="connected")
    first = wait_until(lambda: [m for m in sent() if m["type"] == "subscribe"], what="subscribe")
    assert first[0]["channels"] == ["events"] and "since" not in first[0]
    # Sent is not yet subscribed: events are only for the page once the server has it.
    wait_until(lambda: f.subscribers().get("events"), what="the page's subscription")

    f.publish(*[event(n) for n in range(30)])  # one write: the server coalesces frames
    got = wait_until(lambda: len(seen(page, "events")) == 30 and seen(page, "events"))
    assert [m["event"]["data"]["n"] for m in got] == list(range(30))
    assert [m["offset"] for m in got] == list(range(1, 31))
    epoch = got[0]["epoch"]
    assert page.evaluate("window.client.positions.events") == {"epoch": epoch, "offset": 30}

    f.stop()
    wait_until(lambda: "reconnecting" in states(page), what="reconnecting")
    f.restart()
    wait_until(lambda: states(page).count("connected") == 2, timeout=10, what="reconnected")

    # It resumed with `since`; the new process has a new epoch, so the server reports a gap.
    resume = wait_until(lambda: [m for m in sent() if m["type"] == "subscribe"][1:])
    assert resume[0]["since"] == {"events": {"epoch": epoch, "offset": 30}}
    gap = wait_until(lambda: seen(page, "gaps"))[0]
    assert gap["channel"] == "events" and gap["from"] == {"epoch": epoch, "offset": 30}

    wait_until(lambda: f.subscribers().get("events"), what="the page's new subscription")
    f.publish(event(100), event(101))
    got = wait_until(lambda: len(seen(page, "events")) == 32 and seen(page, "events"))
    assert [(m["event"]["data"]["n"], m["offset"]) for m in got[30:]] == [(100, 1), (101, 2)]
    assert got[30]["epoch"] == gap["epoch"] != epoch


def test_stops_on_authentication_failures(feed, new_page):
    f = feed(dev_token=False)

    bad = new_page()
    start_client(bad, f, make_token("x", "channel:*")[:-4] + "AAAA")
    failed = wait_until(lambda: [s for s in seen(bad, "states") if s["state"] == "auth-failed"])
    assert failed[0]["code"] == 4001 and failed[0]["reason"] == "bad signature"

    # 4004: the token expires during the session (and is not refreshed).
    short = new_page()
    # (long enough to be valid at the handshake on a loaded machine)
    start_client(short, f, make_token("x", "channel:*", ttl=5))
    failed = wait_until(
        lambda: [s for s in seen(short, "states") if s["state"] == "auth-failed"], timeout=10
    )
    assert failed[0]["code"] == 4004
    for page in (bad, short):  # no reconnect attempt after an authentication failure
        page.wait_for_timeout(300)
        assert states(page)[-1] == "auth-failed"
        assert "reconnecting" not in states(page)
