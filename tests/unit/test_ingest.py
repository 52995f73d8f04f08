"""Ingest parsing: every bad item becomes a reason, never an exception that costs other lines."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from netsentinel_websocket.ingest import (
    IngestError,
    LineSplitter,
    allowed,
    parse_body,
    parse_item,
    parse_line,
    peer_ip,
)
from netsentinel_websocket.metrics import INGEST_REASONS

RECORD = {
    "logtype": 4002,
    "src_host": "203.0.113.7",
    "dst_port": 22,
    "node_id": "canary-1",
    "logdata": {"USERNAME": "root", "PASSWORD": "toor"},
    "utc_time": "2026-11-24 19:11:10.123456",
}


def test_opencanary_record_becomes_a_honeypot_event():
    event = parse_item(RECORD)
    assert event["event_type"].startswith("honeypot.ssh.")
    assert event["source"] == "canary-1"
    assert event["data"]["src_ip"] == "203.0.113.7"
    assert event["severity"] in ("high", "critical")


def test_webhook_body_is_unwrapped():
    event = parse_item({"message": json.dumps(RECORD)})
    assert event["data"]["src_ip"] == "203.0.113.7"


def test_standard_event_passes_through():
    assert parse_item({"event_type": "threat.detected", "severity": "high"})["severity"] == "high"


@pytest.mark.parametrize(
    ("line", "message", "reason"),
    [
        (b"not json", "not valid JSON", "malformed"),
        (b"\xff\xfe{}", "not valid JSON", "malformed"),
        (b"[" * 100_000, "not valid JSON", "malformed"),
        (b"[1, 2]", "item must be a JSON object", "not_object"),
        (b'"text"', "item must be a JSON object", "not_object"),
        (b'{"foo": 1}', "neither an OpenCanary record", "invalid"),
        (b'{"logtype": "x"}', "logtype", "invalid"),
        (b'{"event_type": "a", "severity": "loud"}', "severity", "invalid"),
        (b'{"message": "{broken"}', "webhook message is not valid JSON", "invalid"),
        (b'{"message": "[1]"}', "webhook message must hold a JSON object", "invalid"),
    ],
)
def test_bad_lines_have_messages_and_a_reason_label(line, message, reason):
    with pytest.raises(IngestError, match=message) as caught:
        parse_line(line)
    assert caught.value.reason == reason


MARK = "ATTACKER-TEXT-7f3a"

HOSTILE = [
    f'{{"event_type": "a", "severity": "{MARK}"}}',
    f'{{"logtype": "{MARK}"}}',
    f'{{"logtype": 99999999999, "src_host": "{MARK}"}}',
    f'{{"{MARK}": 1}}',
    f'{{"event_type": "a", "tags": "{MARK}"}}',
    f'{{"event_type": "a", "data": "{MARK}"}}',
    f'{{"event_type": "a", "timestamp": "{MARK}"}}',
    f'{{"event_type": "{MARK * 100}"}}',
    f'{{"message": "{MARK}"}}',
    f"{MARK} not json",
]


@pytest.mark.parametrize("line", HOSTILE)
def test_messages_never_echo_the_line(line):
    """The message is logged with the peer: it must be ours, not the attacker's text."""
    with pytest.raises(IngestError) as caught:
        parse_line(line.encode())
    assert MARK not in str(caught.value)
    assert caught.value.reason in INGEST_REASONS


def test_body_forms_and_errors_by_index():
    events, errors = parse_body(json.dumps([RECORD, {"bad": 1}, {"event_type": "a.b"}]).encode())
    assert len(events) == 2
    assert errors == [
        {"index": 1, "error": "neither an OpenCanary record (logtype) nor an event (event_type)"}
    ]
    events, errors = parse_body(json.dumps({"message": json.dumps(RECORD)}).encode())
    assert len(events) == 1 and errors == []
    events, errors = parse_body(b"{oops")
    assert events == [] and errors == [{"index": None, "error": "body is not valid JSON"}]


def test_line_splitter_handles_partial_and_oversized_lines():
    splitter = LineSplitter(max_bytes=10)
    assert list(splitter.feed(b'{"a":1}\n{"b"')) == [b'{"a":1}']
    assert list(splitter.feed(b":2}\n\n")) == [b'{"b":2}']
    # a line longer than the limit, split across reads, is reported once and skipped
    assert list(splitter.feed(b"x" * 8)) == []
    assert list(splitter.feed(b"x" * 8)) == [LineSplitter.TOO_LONG]
    assert list(splitter.feed(b"x" * 50)) == []
    assert list(splitter.feed(b'xx\n{"c":3}\n')) == [b'{"c":3}']
    assert list(splitter.feed(b"y" * 11 + b"\nok\n")) == [LineSplitter.TOO_LONG, b"ok"]


def test_line_splitter_holds_at_most_max_bytes_between_feeds():
    splitter = LineSplitter(max_bytes=100)
    for chunk in (b"a" * 60, b"b" * 40):
        assert list(splitter.feed(chunk)) == []
    assert splitter.held == 100
    # one byte more: refused at once, the partial line is released, the rest skipped
    assert list(splitter.feed(b"c")) == [LineSplitter.TOO_LONG]
    assert splitter.held == 0
    assert list(splitter.feed(b"d" * 10_000)) == []
    assert splitter.held == 0
    assert list(splitter.feed(b"d\n" + b"e" * 100)) == []
    assert splitter.held == 100
    assert list(splitter.feed(b"\n")) == [b"e" * 100]
    assert splitter.held == 0


def test_line_splitter_refuses_a_chunk_bigger_than_the_limit_without_keeping_it():
    splitter = LineSplitter(max_bytes=10)
    assert list(splitter.feed(b"ok\n" + b"z" * 1000)) == [b"ok", LineSplitter.TOO_LONG]
    assert splitter.held == 0
    assert list(splitter.feed(b"z\nnext\n")) == [b"next"]


def test_line_splitter_line_exactly_at_the_limit_is_kept():
    splitter = LineSplitter(max_bytes=10)
    assert list(splitter.feed(b"0123456789\n")) == [b"0123456789"]
    assert list(splitter.feed(b"01234")) == []
    assert list(splitter.feed(b"56789\n")) == [b"0123456789"]
    assert list(splitter.feed(b"0123456789A\n")) == [LineSplitter.TOO_LONG]


def test_line_splitter_dates_the_partial_line_from_its_first_byte():
    splitter = LineSplitter(max_bytes=1000)
    assert splitter.partial_since is None
    list(splitter.feed(b'{"a":', now=1.0))
    list(splitter.feed(b"1", now=2.0))  # more bytes of the same line: still dated 1.0
    assert splitter.partial_since == 1.0
    list(splitter.feed(b'}\n{"b"', now=3.0))  # a new line began at 3.0
    assert splitter.partial_since == 3.0
    list(splitter.feed(b":2}\n", now=4.0))
    assert splitter.partial_since is None
    list(splitter.feed(b"x" * 2000, now=5.0))  # skipped as too long: still open since 5.0
    assert splitter.partial_since == 5.0
    list(splitter.feed(b"x\n", now=6.0))
    assert splitter.partial_since is None


def test_line_splitter_trickled_byte_costs_the_same_however_much_is_held():
    """A line trickled in byte by byte must not rescan what is held on every byte: that is
    quadratic (seconds of CPU per MiB, per connection). Compared, not timed absolutely."""

    def cost(held: int) -> float:
        best = float("inf")
        for _ in range(3):
            splitter = LineSplitter(max_bytes=2 << 20)
            list(splitter.feed(b"x" * held))
            began = time.perf_counter()
            for _ in range(5000):
                for _ in splitter.feed(b"x"):
                    pass
            best = min(best, time.perf_counter() - began)
        return best

    assert cost(1 << 20) < 5 * cost(0)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (("127.0.0.1", 5000), "127.0.0.1"),
        (("::1", 5000, 0, 0), "::1"),
        (("::ffff:10.1.2.3", 5000, 0, 0), "10.1.2.3"),
        (("fe80::1%eth0", 5000, 0, 2), "fe80::1"),
        (("not-an-ip", 5000), None),
        ("", None),
        (None, None),
    ],
)
def test_peer_ip(address, expected):
    ip = peer_ip(address)
    assert (None if ip is None else str(ip)) == expected


LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        (("127.0.0.1", 1), True),
        (("127.9.9.9", 1), True),
        (("::1", 1, 0, 0), True),
        (("::ffff:127.0.0.1", 1, 0, 0), True),  # a dual-stack listener sees IPv4 like this
        (("::ffff:10.0.0.1", 1, 0, 0), False),
        (("10.0.0.1", 1), False),
        (("::2", 1, 0, 0), False),
        (("::", 1, 0, 0), False),
        (("0.0.0.0", 1), False),
        ("unix-socket", False),
    ],
)
def test_default_allowlist_is_loopback_only(address, ok):
    assert allowed(peer_ip(address), LOOPBACK) is ok


def test_a_sender_cannot_pose_as_a_followed_files_line():
    forged = {"event_type": "honeypot.x", "id": "file:" + "0" * 24 + ":12"}
    with pytest.raises(IngestError, match="reserved for file ingest"):
        parse_item(forged)
    assert parse_item({**forged, "id": "file:not-a-file-id"})["id"] == "file:not-a-file-id"
