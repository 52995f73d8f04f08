"""The dashboard page in headless Chromium against a real ``serve`` subprocess."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import record_messages, wait_until
from tests.conftest import event, make_token

pytestmark = pytest.mark.browser


def row(page, event_id: str, channel: str = "events"):
    return page.locator(
        f'#rows tr[data-event-id="{event_id}"]:has(td.channel:text-is("{channel}"))'
    )


def open_dashboard(page, feed):
    page.goto(feed.dashboard)
    page.locator('#state[data-state="connected"]').wait_for()
    page.locator("#channels input").first.wait_for()
    # "connected" means welcomed; events are only for it once the server has the subscription.
    wait_until(lambda: feed.subscribers().get("events"), what="the page's subscription")
    return page


def apply(page, action) -> None:
    """Change a filter control and wait until the server confirmed the new subscription."""
    action()
    page.locator('#filter-status:text-is("filter applied")').wait_for()


def test_events_appear_within_a_second(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(), f)
    assert "<!--WS-PATH-->" not in page.content()

    sent = time.monotonic()
    f.publish(event(1, severity="critical"), event(2, severity="low"))
    row(page, "e-1").wait_for(timeout=1000)
    row(page, "e-2").wait_for(timeout=1000)
    row(page, "e-1", "threats").wait_for(timeout=1000)  # its own channel: its own frame
    assert time.monotonic() - sent < 1.0

    # Newest first; critical also lands on threats; colours by severity class.
    assert page.locator("#rows tr").count() == 3
    on_events = page.locator('#rows tr:has(td.channel:text-is("events"))')
    assert on_events.evaluate_all("rows => rows.map(r => r.dataset.eventId)") == ["e-2", "e-1"]
    assert row(page, "e-1", "threats").locator(".sev-critical").count() == 1
    assert row(page, "e-2").locator(".sev-low").count() == 1
    wait_until(lambda: page.inner_text("#tab-events .count") == "2", what="events counter")
    assert page.inner_text("#tab-threats .count") == "1"

    # A tab shows one channel only.
    page.click("#tab-threats")
    assert page.locator("#rows tr").count() == 1

    # Keyboard: Enter on a row opens the full JSON, Escape closes it.
    page.locator("#rows tr").first.focus()
    page.keyboard.press("Enter")
    assert page.locator("#detail").is_visible()
    assert '"id": "e-1"' in page.inner_text("#detail-json")
    page.keyboard.press("Escape")
    assert not page.locator("#detail").is_visible()


def test_filter_change_stops_events_that_do_not_match(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(), f)

    # In each step the event that must be filtered out is published first, on the same channel,
    # so when the matching one has arrived the other one would have been there already.
    apply(page, lambda: page.select_option("#min-severity", "critical"))
    f.publish(event(1, severity="high"), event(2, severity="critical"))
    row(page, "e-2").wait_for(timeout=1000)
    assert row(page, "e-1").count() == 0

    apply(
        page,
        lambda: (page.fill("#event-types", "honeypot.ftp.*"), page.press("#event-types", "Enter")),
    )
    f.publish(event(3, severity="critical"), event(4, "honeypot.ftp.login", severity="critical"))
    row(page, "e-4").wait_for(timeout=1000)
    assert row(page, "e-3").count() == 0

    page.fill("#event-types", "")
    apply(page, lambda: (page.fill("#src-ip", "198.51.100.0/24"), page.press("#src-ip", "Enter")))
    f.publish(event(5, severity="critical"), event(6, severity="critical", src_ip="198.51.100.9"))
    row(page, "e-6").wait_for(timeout=1000)
    assert row(page, "e-5").count() == 0

    apply(page, lambda: page.uncheck('#channels input[value="threats"]'))
    f.publish(event(7, severity="critical", src_ip="198.51.100.10"))
    row(page, "e-7").wait_for(timeout=1000)
    # e-7's threats frame would follow its events frame: a later event on the same connection
    # arrives after it, so once e-8 is shown the threats row would have been too.
    f.publish(event(8, severity="critical", src_ip="198.51.100.11"))
    row(page, "e-8").wait_for(timeout=1000)
    assert row(page, "e-7", "threats").count() == 0

    # A filter the server refuses is reported, and the connection stays up.
    page.fill("#src-ip", "not-a-cidr")
    page.press("#src-ip", "Enter")
    page.locator("#filter-status.error").wait_for()
    assert page.get_attribute("#state", "data-state") == "connected"


def test_reconnects_after_a_server_restart(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(), f)
    f.publish(event(1))
    row(page, "e-1").wait_for(timeout=1000)

    f.stop()
    page.locator('#state[data-state="reconnecting"]').wait_for()
    assert "reconnecting" in page.inner_text("#state")

    f.restart()
    page.locator('#state[data-state="connected"]').wait_for(timeout=15000)
    # A memory broker loses its history with the process: the page says events may be missing.
    page.locator("#gap").wait_for()
    assert "Gap detected" in page.inner_text("#gap")
    page.click("#gap-dismiss")
    assert not page.locator("#gap").is_visible()

    wait_until(lambda: f.subscribers().get("events"), what="the page's new subscription")
    f.publish(event(2))
    row(page, "e-2").wait_for(timeout=1000)
    assert row(page, "e-1").count() == 1  # earlier rows stay


def test_token_is_asked_for_kept_in_the_session_and_allows_acks(feed, new_page):
    f = feed(dev_token=False)
    page = new_page()
    page.goto(f.dashboard)
    assert page.locator("#login").is_visible()
    assert page.locator("#main").is_hidden()

    page.fill("#token", make_token("alice", "channel:* alerts:ack"))
    page.press("#token", "Enter")
    page.locator('#state[data-state="connected"]').wait_for()
    assert page.url == f.dashboard  # never in the address
    assert "alice" in page.inner_text("#identity")

    wait_until(lambda: f.subscribers().get("alerts"), what="the page's subscription")
    f.publish(event(1, "alert.raised", severity="high", alert_id="A-7"))
    alert = row(page, "e-1", "alerts")
    alert.locator("button.ack-button").click()
    alert.locator('td.ack:text-is("acked")').wait_for()

    # Still signed in after a reload: the token is in sessionStorage.
    page.reload()
    page.locator('#state[data-state="connected"]').wait_for()
    assert page.locator("#login").is_hidden()

    # A token without alerts:ack gets no acknowledge button.
    other = new_page()
    received = record_messages(other, "framereceived")
    other.goto(f.dashboard)
    other.fill("#token", make_token("bob", "channel:alerts"))
    other.press("#token", "Enter")
    other.locator('#state[data-state="connected"]').wait_for()
    wait_until(  # (the server's count includes alice on alerts)
        lambda: [m for m in received() if m["type"] == "subscribed"], what="bob's subscription"
    )
    f.publish(event(2, "alert.raised", severity="high"))
    row(other, "e-2", "alerts").wait_for(timeout=1000)
    assert other.locator("button.ack-button").count() == 0

    # A refused token brings the form back with the reason.
    third = new_page()
    third.goto(f.dashboard)
    third.fill("#token", make_token("carol", "channel:*", ttl=-10))
    third.press("#token", "Enter")
    assert "expired" in third.inner_text("#login-error")
    third.fill("#token", make_token("carol", "channel:*", extra_claim=1)[:-4] + "AAAA")
    third.press("#token", "Enter")
    third.locator('#state[data-state="auth-failed"]').wait_for()
    assert "bad signature" in third.inner_text("#login-error")


def test_phone_sized_screen(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(390, 844), f)
    f.publish(event(1, severity="critical"))
    row(page, "e-1").wait_for(timeout=1000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.locator("#state").is_visible()
    assert page.locator("#min-severity").is_visible()
