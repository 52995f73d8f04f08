"""Ingest parsing: every bad item becomes a reason, never an exception that costs other lines."""

from __future__ import annotations

import json

import pytest

from netsentinel_websocket.ingest import (
    IngestError,
    LineSplitter,
    parse_body,
    parse_item,
    parse_line,
)

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
    ("line", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "item must be a JSON object"),
        (b'"text"', "item must be a JSON object"),
        (b'{"foo": 1}', "neither an OpenCanary record"),
        (b'{"logtype": "x"}', "logtype"),
        (b'{"event_type": "a", "severity": "loud"}', "severity"),
        (b'{"message": "{broken"}', "webhook message is not valid JSON"),
        (b'{"message": "[1]"}', "webhook message must hold a JSON object"),
    ],
)
def test_bad_lines_have_reasons(line, reason):
    with pytest.raises(IngestError, match=reason):
        parse_line(line)


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
