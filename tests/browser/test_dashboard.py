"""The dashboard page in headless Chromium against a real ``serve`` subprocess."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.browser.conftest import record_messages, wait_until
from tests.browser.screenshot import OUTPUT_ENV, backlog
from tests.conftest import event, make_token

pytestmark = pytest.mark.browser

# How long a row may take to show once published, outside the one test that times it (a
# loaded CI machine runs four browsers at once: a second is not always enough there).
WAIT_MS = 5000


def row(page, event_id: str, channel: str = "events"):
    """The one row of an event, required to list ``channel`` among its channels."""
    return page.locator(
        f'#rows tr[data-event-id="{event_id}"]:has(td.channels .chip:text-is("{channel}"))'
    )


def row_ids(page) -> list[str]:
    return page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")


def open_dashboard(page, feed, channel: str = "events"):
    page.goto(feed.dashboard)
    page.locator('#state[data-state="connected"]').wait_for()
    page.locator("#channels input").first.wait_for(state="attached")
    # "connected" means welcomed; events are only for it once the server has the subscription.
    wait_until(lambda: feed.subscribers().get(channel), what="the page's subscription")
    return page


def in_history(feed, channel: str, count: int) -> None:
    wait_until(lambda: len(feed.history(channel)) >= count, what=f"{count} events in history")


def apply(page, action) -> None:
    """Change a filter control and wait until the server confirmed the new subscription."""
    action()
    page.locator('#filter-status:text-is("filter applied")').wait_for()


def sign_in(page, feed, token: str, channel: str = "alerts"):
    page.goto(feed.dashboard)
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.locator('#state[data-state="connected"]').wait_for()
    return page


def test_events_appear_within_a_second(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(), f)
    assert "<!--WS-PATH-->" not in page.content()

    sent = time.monotonic()
    f.publish(event(1, severity="critical"), event(2, severity="low"))
    row(page, "e-1").wait_for(timeout=1000)
    row(page, "e-2").wait_for(timeout=1000)
    row(page, "e-1", "threats").wait_for(timeout=1000)  # its threats copy joins the same row
    assert time.monotonic() - sent < 1.0

    # Newest first, one row per event however many channels carry it; colours by severity.
    assert row_ids(page) == ["e-2", "e-1"]
    assert row(page, "e-1").locator(".sev-critical").count() == 1
    assert row(page, "e-2").locator(".sev-low").count() == 1
    wait_until(lambda: page.inner_text("#tab-threats .count") == "1", what="threats counter")
    assert page.inner_text("#tab-events .count") == "2"
    assert page.inner_text("#tab-all .count") == "2"  # not 3: each event counts once

    # A tab shows one channel only.
    page.click("#tab-threats")
    assert row_ids(page) == ["e-1"]

    # Keyboard: Enter on a row opens the detail (who and what first, then the JSON).
    page.locator("#rows tr").first.focus()
    page.keyboard.press("Enter")
    assert page.locator("#detail").is_visible()
    assert '"id": "e-1"' in page.inner_text("#detail-json")
    fields = page.inner_text("#detail-fields")
    assert "203.0.113.7" in fields and "events, threats" in fields
    page.keyboard.press("Escape")
    assert not page.locator("#detail").is_visible()


def test_opens_with_history_then_resumes_live_without_loss_or_doubles(feed, new_page):
    f = feed()
    f.publish(event(1, severity="critical"), event(2, severity="low"), event(3, severity="high"))
    in_history(f, "events", 3)

    page = new_page()
    sent = record_messages(page, "framesent")
    open_dashboard(page, f)
    # History, deduplicated: three rows although threats carries two of them as well.
    wait_until(lambda: row_ids(page) == ["e-3", "e-2", "e-1"], what="history rows")
    assert row(page, "e-1", "threats").count() == 1
    assert "3 events from history" in page.inner_text("#view-status")
    # The live subscription continues exactly where the history ended.
    subscribe = next(m for m in sent() if m["type"] == "subscribe")
    assert subscribe["since"]["events"]["offset"] == 3
    assert subscribe["since"]["threats"]["offset"] == 2

    f.publish(event(4, severity="critical"))
    row(page, "e-4", "threats").wait_for(timeout=WAIT_MS)
    assert row_ids(page) == ["e-4", "e-3", "e-2", "e-1"]

    # A reload keeps what is on screen: the rows from history, the search typed before.
    page.fill("#search", "e-")
    page.reload()
    page.locator('#state[data-state="connected"]').wait_for()
    wait_until(lambda: row_ids(page) == ["e-4", "e-3", "e-2", "e-1"], what="rows after reload")
    assert page.input_value("#search") == "e-"


def test_pause_search_and_click_to_filter(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(), f)
    f.publish(
        event(1, src_ip="198.51.100.1", username="root", dst_port=22),
        event(2, "honeypot.ftp.login_attempt", src_ip="198.51.100.2", username="hunter"),
        event(3, src_ip="198.51.100.1", username="admin", dst_port=22),
    )
    row(page, "e-3").wait_for(timeout=WAIT_MS)

    # Text search over every field.
    page.fill("#search", "HUNTER")
    wait_until(lambda: row_ids(page) == ["e-2"], what="search result")
    page.fill("#search", "")
    wait_until(lambda: len(row_ids(page)) == 3, what="all rows again")

    # A click on a source address filters by it; the chip undoes it.
    row(page, "e-1").locator('.facet[data-key="src_ip"]').click()
    assert row_ids(page) == ["e-3", "e-1"]
    assert page.inner_text("#facets") == "source: 198.51.100.1 \u00d7"
    row(page, "e-1").locator('.facet[data-key="event_type"]').click()  # and by type
    assert row_ids(page) == ["e-3", "e-1"]
    page.click('#facets .chip[data-key="src_ip"]')
    page.click('#facets .chip[data-key="event_type"]')
    row(page, "e-2").locator('.facet[data-key="service"]').click()  # service "ftp"
    assert row_ids(page) == ["e-2"]
    page.click("#facets .chip")
    assert len(row_ids(page)) == 3

    # Paused: the table holds still and counts what arrived meanwhile.
    page.click("#pause")
    f.publish(event(4), event(5))
    page.locator('#pause:text-is("Resume (2 new)")').wait_for()
    assert len(row_ids(page)) == 3
    page.click("#pause")
    assert row_ids(page)[:2] == ["e-5", "e-4"]
    assert page.inner_text("#pause") == "Pause"


def test_filter_change_stops_events_that_do_not_match(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(), f)
    page.click("#settings summary")  # folded by default: the panels and rows come first

    # In each step the event that must be filtered out is published first, on the same channel,
    # so when the matching one has arrived the other one would have been there already.
    apply(page, lambda: page.select_option("#min-severity", "critical"))
    f.publish(event(1, severity="high"), event(2, severity="critical"))
    row(page, "e-2").wait_for(timeout=WAIT_MS)
    assert page.locator('#rows tr[data-event-id="e-1"]').count() == 0

    apply(
        page,
        lambda: (page.fill("#event-types", "honeypot.ftp.*"), page.press("#event-types", "Enter")),
    )
    f.publish(event(3, severity="critical"), event(4, "honeypot.ftp.login", severity="critical"))
    row(page, "e-4").wait_for(timeout=WAIT_MS)
    assert page.locator('#rows tr[data-event-id="e-3"]').count() == 0

    page.fill("#event-types", "")
    apply(page, lambda: (page.fill("#src-ip", "198.51.100.0/24"), page.press("#src-ip", "Enter")))
    f.publish(event(5, severity="critical"), event(6, severity="critical", src_ip="198.51.100.9"))
    row(page, "e-6").wait_for(timeout=WAIT_MS)
    assert page.locator('#rows tr[data-event-id="e-5"]').count() == 0

    apply(page, lambda: page.uncheck('#channels input[value="threats"]'))
    f.publish(event(7, severity="critical", src_ip="198.51.100.10"))
    row(page, "e-7").wait_for(timeout=WAIT_MS)
    # e-7's threats frame would follow its events frame: a later event on the same connection
    # arrives after it, so once e-8 is shown the threats copy would have been too.
    f.publish(event(8, severity="critical", src_ip="198.51.100.11"))
    row(page, "e-8").wait_for(timeout=WAIT_MS)
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
    row(page, "e-1").wait_for(timeout=WAIT_MS)

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
    row(page, "e-2").wait_for(timeout=WAIT_MS)
    assert row(page, "e-1").count() == 1  # earlier rows stay


def test_panels_map_and_quiet_sensors(feed, new_page):
    f = feed(websocket__geoip__enabled=True)
    now = time.time()
    old = {"timestamp": now - 2 * 3600}  # in the 24 h range, not in the last 15 minutes (nor e-5)
    f.publish(
        {**event(1, src_ip="61.177.172.13", username="root", password="hunter2"), **old},
        event(2, src_ip="61.177.172.13", username="root", password="123456", dst_port=22),
        event(3, src_ip="185.220.101.4", username="admin", dst_port=22),
        event(4, "honeypot.ftp.login_attempt", src_ip="61.177.172.13", dst_port=21),
        {
            **event(5, "status.heartbeat", severity="info"),
            "source": "canary-old",
            "timestamp": now - 1800,
        },
        {**event(6, "status.heartbeat", severity="info"), "source": "canary-live"},
    )
    in_history(f, "status", 2)
    page = open_dashboard(new_page(), f)

    def top(key: str) -> list[str]:
        """A top list as "label=count" items (a list's placeholder item, before its first
        entry, has neither)."""
        return page.locator(f"#top-{key} li").evaluate_all(
            "items => items.filter(li => li.querySelector('.facet') && li.querySelector('.n'))"
            ".map(li => li.querySelector('.facet').textContent + '='"
            " + li.querySelector('.n').textContent)"
        )

    wait_until(lambda: top("src_ip")[:1] == ["61.177.172.13=3"], what="top sources")
    assert top("src_ip") == ["61.177.172.13=3", "203.0.113.7=2", "185.220.101.4=1"]
    assert top("country") == ["China (CN)=3", "Germany (DE)=1"]
    assert top("username") == ["root=2", "admin=1"]
    assert top("dst_port") == [":22=2", ":21=1"]
    assert top("service") == ["ssh=3", "ftp=1"]
    # The dev token carries events:sensitive: the attempted passwords are shown and counted.
    assert sorted(top("password")) == ["123456=1", "hunter2=1"]

    # Sensors: the one silent for 30 minutes is flagged quiet (after 10 min by default).
    quiet = page.locator("#sensors li.quiet")
    quiet.wait_for()
    assert quiet.locator(".facet").inner_text() == "canary-old"
    assert "canary-live" in page.inner_text("#sensors li:not(.quiet)")

    # Events over time, in the chosen range: the 2-hour-old event counts only over 24 h.
    page.locator('#rate-caption:text-matches("^4 events, last 15 min")').wait_for()
    page.select_option("#range", "86400")
    page.locator('#rate-caption:text-matches("^6 events, last 24 h")').wait_for()

    # The world map (shipped in the package) shades the attackers' countries; a click filters.
    cn = page.locator('#map path[data-value="CN"]')
    assert "heat-5" in cn.get_attribute("class")
    assert "heat-" in page.get_attribute('#map path[data-value="DE"]', "class")
    assert page.get_attribute('#map path[data-value="FR"]', "class") == "country"
    assert page.locator("#map path").count() > 150
    cn.click()
    assert page.inner_text("#facets") == "country: CN \u00d7"
    assert sorted(row_ids(page)) == ["e-1", "e-2", "e-4"]
    page.click("#top-username .facet >> text=admin")  # a panel entry filters too
    assert row_ids(page) == []
    assert page.inner_text("#empty") == "No event matches."

    # Without events:sensitive the server hides passwords, and the page has no password panel.
    other = new_page()
    plain = make_token("eve", "channel:*")
    other.add_init_script(f"sessionStorage.setItem('netsentinel.token', '{plain}')")
    open_dashboard(other, f)
    other.locator("#top-username li .facet").first.wait_for()
    assert other.locator("#passwords-panel").is_hidden()
    assert other.locator("#top-password li").count() == 0
    row(other, "e-2").locator("td.time").click()
    assert "hidden (needs the events:sensitive scope)" in other.inner_text("#detail-fields")
    assert "123456" not in other.inner_text("#detail")


def test_shared_acks_and_the_ack_control(feed, new_page):
    f = feed(dev_token=False)
    alice = sign_in(new_page(), f, make_token("alice", "channel:* alerts:ack"))
    bob = sign_in(new_page(), f, make_token("bob", "channel:alerts channel:events"))
    wait_until(lambda: f.subscribers().get("alerts", 0) >= 2, what="both subscriptions")

    f.publish(event(1, "alert.raised", severity="high", alert_id="A-7"), event(2))
    for page in (alice, bob):
        row(page, "e-1", "alerts").wait_for(timeout=WAIT_MS)
        row(page, "e-2").wait_for(timeout=WAIT_MS)
    # The Ack control: only on alerts, only for a token with alerts:ack.
    assert alice.locator("#rows button.ack-button").count() == 1
    assert row(alice, "e-1", "alerts").locator("button.ack-button").count() == 1
    assert bob.locator("#rows button.ack-button").count() == 0

    row(alice, "e-1", "alerts").locator("button.ack-button").click()
    # Shared: the acknowledgement reaches every open dashboard, with who and when.
    for page in (alice, bob):
        row(page, "e-1", "alerts").locator('td.ack:text-matches("^acked by alice at ")').wait_for()
    ack_row = alice.locator("#rows tr:has(.facet[data-value='alert.acknowledged'])")
    ack_row.wait_for()  # the announcement is an ordinary event of the alerts channel
    assert ack_row.locator('td.channels .chip:text-is("alerts")').count() == 1

    # A dashboard opened later learns it from history; the detail says it too.
    carol = sign_in(new_page(), f, make_token("carol", "channel:* alerts:ack"))
    cell = row(carol, "e-1", "alerts").locator("td.ack")
    cell.wait_for()
    wait_until(lambda: cell.inner_text().startswith("acked by alice"), what="ack from history")
    assert carol.locator("#rows button.ack-button").count() == 0
    row(carol, "e-1", "alerts").locator("td.time").click()
    assert carol.inner_text("#ack-info").startswith("acked by alice")
    assert carol.locator("#ack-form").is_hidden()


def test_token_is_asked_for_kept_in_the_session_and_refreshed_in_place(feed, new_page):
    f = feed(dev_token=False)
    page = new_page()
    sockets: list[object] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    sent = record_messages(page, "framesent")
    page.goto(f.dashboard)
    assert page.locator("#login").is_visible()
    assert page.locator("#main").is_hidden()

    page.fill("#token", make_token("alice", "channel:* events:sensitive"))
    page.press("#token", "Enter")
    page.locator('#state[data-state="connected"]').wait_for()
    assert page.url == f.dashboard  # never in the address
    assert "alice" in page.inner_text("#identity")
    wait_until(lambda: f.subscribers().get("events"), what="the page's subscription")
    f.publish(event(1, password="hunter2"))
    row(page, "e-1").wait_for(timeout=WAIT_MS)
    assert "password=hunter2" in page.inner_text("#rows")

    # Refresh in place: the new token goes over the open connection; nothing is torn down.
    page.click("#refresh")
    assert page.locator("#main").is_visible()
    page.fill("#token", make_token("alice", "channel:* alerts:ack", ttl=7200))
    page.press("#token", "Enter")
    page.locator('#view-status:text-is("token refreshed")').wait_for()
    assert [m["type"] for m in sent()].count("auth") == 1
    assert len(sockets) == 1
    assert row(page, "e-1").count() == 1

    # The page's own hook (for a kiosk or SSO helper that fetches tokens) does the same.
    page.evaluate("t => NetSentinelDashboard.refreshToken(t)", make_token("alice", "channel:*"))
    wait_until(lambda: [m["type"] for m in sent()].count("auth") == 2, what="hook refresh")
    assert len(sockets) == 1

    # "Change token" to another analyst keeps nothing of the last one's view: bob, without
    # events:sensitive, sees e-1 again from history, with the password hidden.
    assert "password=hunter2" in page.inner_text("#rows")  # alice's view, kept until now
    page.click("#signout")
    page.fill("#token", make_token("bob", "channel:*"))
    page.press("#token", "Enter")
    page.locator('#state[data-state="connected"]').wait_for()
    row(page, "e-1").wait_for()
    assert "password=[redacted]" in page.inner_text("#rows")
    assert "hunter2" not in page.inner_text("body")

    # Still signed in after a reload: the token is in sessionStorage.
    page.reload()
    page.locator('#state[data-state="connected"]').wait_for()
    assert page.locator("#login").is_hidden()
    assert "bob" in page.inner_text("#identity")

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


def test_token_expiring_mid_session_keeps_the_view(feed, new_page):
    f = feed(dev_token=False, websocket__auth__jwt__leeway=0)
    page = sign_in(new_page(), f, make_token("dave", "channel:*", ttl=3))
    # Asked at once (less than two minutes left), above the kept view.
    page.locator("#login.in-place").wait_for()
    assert "expires at" in page.inner_text("#login-error")
    wait_until(lambda: f.subscribers().get("events"), what="the page's subscription")
    f.publish(event(1))
    row(page, "e-1").wait_for(timeout=WAIT_MS)

    # The server closes the expired session: the rows stay, the form says why.
    page.locator('#state[data-state="auth-failed"]').wait_for(timeout=8000)
    assert "token expired" in page.inner_text("#login-error")
    assert page.locator("#main").is_visible()
    assert row(page, "e-1").count() == 1
    f.publish(event(2))  # published while signed out: the resume brings it

    page.fill("#token", make_token("dave", "channel:*"))
    page.press("#token", "Enter")
    page.locator('#state[data-state="connected"]').wait_for()
    row(page, "e-2").wait_for(timeout=2000)
    assert row_ids(page) == ["e-2", "e-1"]
    assert page.locator("#login").is_hidden()


def test_critical_events_get_attention(feed, new_page):
    f = feed()
    page = new_page()
    # Record what the page asks of the browser's notification and audio APIs.
    page.add_init_script(
        """
        window.__notes = []; window.__beeps = 0;
        window.Notification = class { constructor(title, o) { __notes.push([title, o.body]); } };
        Notification.permission = "granted";
        Notification.requestPermission = async () => "granted";
        window.AudioContext = class {
          constructor() { this.currentTime = 0; this.destination = {}; }
          createOscillator() { return { frequency: {}, connect: (g) => g,
            start() { __beeps += 1; }, stop() {} }; }
          createGain() { return { gain: {}, connect: (d) => d }; }
        };
        """
    )
    open_dashboard(page, f)
    page.click("#settings summary")
    page.check("#sound")
    page.check("#notify")

    f.publish(event(1, severity="high"))
    row(page, "e-1").wait_for(timeout=WAIT_MS)
    assert page.title() == "NetSentinel live feed"
    assert page.evaluate("[__notes.length, __beeps]") == [0, 0]

    f.publish(event(2, "honeypot.ssh.login_attempt", severity="critical", username="root"))
    row(page, "e-2").wait_for(timeout=WAIT_MS)
    assert page.title() == "(1) NetSentinel live feed"
    assert page.inner_text("#critical-badge") == "1 critical"
    notes = page.evaluate("__notes")
    assert notes[0][0] == "Critical: honeypot.ssh.login_attempt from 203.0.113.7"
    assert "username=root" in notes[0][1]
    assert page.evaluate("__beeps") == 1

    page.click("#critical-badge")
    assert page.title() == "NetSentinel live feed"
    assert page.locator("#critical-badge").is_hidden()


def test_phone_sized_screen(feed, new_page):
    f = feed()
    page = open_dashboard(new_page(390, 844), f)
    long = "A" * 300
    f.publish(event(1, severity="critical", username=long, path="/" + "x/" * 100))
    row(page, "e-1").wait_for(timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The first screen shows the state, the search and the events (filters are folded).
    assert page.locator("#state").is_visible()
    assert page.locator("#search").is_visible()
    assert page.locator("#min-severity").is_hidden()
    box = page.locator("#rows tr").first.bounding_box()
    assert box["y"] + 40 < 844
    page.click("#settings summary")
    assert page.locator("#min-severity").is_visible()
    # The token can be refreshed at phone width too.
    page.click("#refresh")
    assert page.locator("#token").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_attacker_fields_are_inert_in_every_panel(feed, new_page):
    f = feed()
    payload = '<img src=x onerror="window.__xss=1">'
    hostile = event(
        1,
        severity="critical",
        src_ip=payload,
        username=payload,
        password=payload,
        service=payload,
        dst_port=22,
        src_geo={"country": payload, "name": payload},
        note=payload,
    )
    hostile["source"] = payload
    status = {**event(2, "status.heartbeat", severity="info"), "source": payload}
    alert = event(3, "alert.raised", severity="high", alert_id=payload)
    page = open_dashboard(new_page(), f)
    f.publish(hostile, status, alert)
    row(page, "e-3", "alerts").wait_for(timeout=WAIT_MS)
    page.locator("#top-username li .facet").first.wait_for()
    page.locator("#rows tr").last.locator("td.time").click()  # the detail view as well
    assert payload in page.inner_text("#detail-fields")
    page.keyboard.press("Escape")
    for panel in ("src_ip", "country", "service", "username", "password"):
        assert payload in page.inner_text(f"#top-{panel}"), panel
    assert payload in page.inner_text("#sensors")
    page.click(f'#rows .facet[data-key="src_ip"] >> text={payload}')
    assert payload in page.inner_text("#facets")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0


LONG_TASKS = """
window.__long = [];
window.__frames = [];
new PerformanceObserver((list) => {
  for (const task of list.getEntries()) { __long.push([task.startTime, task.duration]); }
}).observe({ type: "longtask", buffered: true });
(function frame(t) { __frames.push(t); if (__frames.length > 20000) __frames.shift();
  requestAnimationFrame(frame); })(0);
"""


def test_stays_responsive_with_2000_events_in_history_and_50_per_second(feed, new_page):
    f = feed(websocket__history__size=5000)
    sev = ("low", "medium", "high", "critical")

    def ev(n: int) -> dict:
        return event(
            n, severity=sev[n % 4], src_ip=f"198.51.100.{n % 250}", username=f"user{n % 40}"
        )

    f.publish(*(ev(n) for n in range(2000)))
    wait_until(lambda: f.history("events")[-1]["event"]["id"] == "e-1999", what="the history")
    page = new_page()
    page.add_init_script(LONG_TASKS)
    started = time.monotonic()
    open_dashboard(page, f)
    page.locator('#view-status:text-is("2000 events from history")').wait_for(timeout=15000)
    loaded = time.monotonic() - started
    assert len(row_ids(page)) == 300  # the table's bound; the panels count all 2000
    wait_until(lambda: page.locator("#top-username .facet").count() == 8, what="panels")

    # 50 events/s for 5 s, measured in the page: long tasks (> 50 ms) and frame gaps.
    mark = page.evaluate("performance.now()")
    for second in range(5):
        for tick in range(10):
            n = 2000 + second * 50 + tick * 5
            f.publish(*(ev(i) for i in range(n, n + 5)))
            time.sleep(0.1)
    row(page, "e-2249").wait_for(timeout=5000)
    end = page.evaluate("performance.now()")
    long_tasks = page.evaluate(f"__long.filter(([t]) => t >= {mark}).map(([, d]) => d)")
    frames = page.evaluate(f"__frames.filter((t) => t >= {mark})")
    gaps = [b - a for a, b in zip(frames, frames[1:], strict=False)]
    live = (end - mark) / 1000
    busy = sum(long_tasks) / (end - mark)
    print(
        f"\nhistory of 2000 shown in {loaded:.2f} s; live {live:.1f} s at 50 events/s: "
        f"{len(long_tasks)} long tasks ({sum(long_tasks):.0f} ms, {busy:.1%} of the time, "
        f"longest {max(long_tasks, default=0):.0f} ms); {len(frames) / live:.0f} frames/s, "
        f"longest frame {max(gaps, default=0):.0f} ms"
    )
    # Generous bounds: CI runs four of these at once on two cores, and a long task's duration
    # is wall time, so a starved renderer looks busy (30.9% and a 150 ms frame were seen on a
    # machine 2.5x slower than usual, 54% in another). These catch a page that cannot keep up; the
    # figures of record are measured alone (docs/performance.md, "The dashboard under load").
    assert busy < 0.8  # 54% was seen under CI load; a page redrawing everything pegs near 100%
    assert max(gaps, default=0) < 2000
    assert len(row_ids(page)) == 300


def test_screenshots_at_desktop_and_phone_width(feed, new_page, tmp_path):
    """The pictures of docs/dashboard.md (``python -m tests.browser.screenshot`` writes them
    there): an hour of the demo stream in history, a few live events on top."""
    f = feed(websocket__geoip__enabled=True)
    f.publish(*backlog())
    wait_until(lambda: len(f.history("events")) >= 400, what="the backlog in history")
    out = Path(os.environ.get(OUTPUT_ENV) or tmp_path)
    shots = {"dashboard.png": (1280, 800), "dashboard-phone.png": (390, 844)}
    for name, (width, height) in shots.items():
        page = open_dashboard(new_page(width, height), f)
        page.select_option("#range", "3600")
        page.locator('#view-status:text-matches("^[0-9]+ events from history")').wait_for()
        f.publish(event(90_000 + width, severity="critical", username="root", password="toor"))
        page.locator(f'#rows tr[data-event-id="e-{90_000 + width}"]').wait_for()
        page.locator("#map path.heat-5").first.wait_for()
        page.wait_for_timeout(1100)  # the panels' next second
        path = out / name
        page.screenshot(path=str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(path.read_bytes()[16:20], "big") == width
