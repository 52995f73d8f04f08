"""StandardEvent normalization: mappings and objects (with enums) give the same dict."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from netsentinel_websocket.events import (
    FIELDS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    EventError,
    new_id,
    normalize_event,
    serialize_event,
    to_json,
)


class Severity(enum.Enum):
    HIGH = "high"


@dataclass
class StandardEvent:
    event_type: str
    severity: Any = "info"
    id: str = "evt-1"
    timestamp: Any = 1700000000.0
    source: str = "sensor-1"
    data: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    correlation_id: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


def test_mapping_and_object_give_the_same_event():
    as_obj = StandardEvent("threat.detected", Severity.HIGH, data={"src_ip": "1.2.3.4"}, tags=["x"])
    as_map = {
        "id": "evt-1",
        "timestamp": 1700000000.0,
        "event_type": "threat.detected",
        "source": "sensor-1",
        "severity": "high",
        "data": {"src_ip": "1.2.3.4"},
        "tags": ["x"],
        "correlation_id": None,
        "metadata": {},
    }
    assert normalize_event(as_obj) == normalize_event(as_map) == as_map
    assert tuple(normalize_event(as_map)) == FIELDS


def test_defaults_fill_in():
    event = normalize_event({"event_type": "status.ok"})
    assert event["severity"] == "info"
    assert event["data"] == {} and event["tags"] == [] and event["metadata"] == {}
    assert len(event["id"]) == 32
    assert event["timestamp"] > 1.7e9


def test_datetime_timestamp_and_upper_case_severity():
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    event = normalize_event({"event_type": "a.b", "severity": "CRITICAL", "timestamp": when})
    assert event["severity"] == "critical"
    assert event["timestamp"] == when.timestamp()


def test_normalized_event_is_a_copy():
    source = {"event_type": "a.b", "data": {"k": 1}}
    event = normalize_event(source)
    event["data"]["k"] = 2
    assert source["data"]["k"] == 1


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({}, "event_type"),
        ({"event_type": ""}, "event_type"),
        ({"event_type": 5}, "event_type"),
        ({"event_type": "a", "severity": "urgent"}, "severity"),
        ({"event_type": "a", "data": [1]}, "data must be an object"),
        ({"event_type": "a", "metadata": "x"}, "metadata must be an object"),
        ({"event_type": "a", "tags": "x"}, "tags must be a list"),
        ({"event_type": "a", "tags": [1]}, "tags must be a list"),
        ({"event_type": "a", "timestamp": "yesterday"}, "timestamp"),
        ({"event_type": "a", "timestamp": True}, "timestamp"),
        (42, "event must be an object"),
    ],
)
def test_bad_events_are_refused_with_a_reason(event, reason):
    with pytest.raises(EventError, match=reason):
        normalize_event(event)


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        (["x" * (MAX_TAG_CHARS + 1), 1], "invalid"),  # a wrong type is invalid, whatever else
        ([*(["x"] * (MAX_TAGS + 1)), None], "invalid"),
        (["x" * (MAX_TAG_CHARS + 1), "y"], "too_large"),
        (["x"] * (MAX_TAGS + 1), "too_large"),
        (("a", "b", "a"), None),  # any sequence of strings: a list of them, duplicates kept
    ],
)
def test_tags_are_checked_for_type_then_size(tags, reason):
    if reason is None:
        assert normalize_event({"event_type": "a", "tags": tags})["tags"] == list(tags)
        return
    with pytest.raises(EventError) as caught:
        normalize_event({"event_type": "a", "tags": tags})
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [(1700000000.25, 1700000000.25), (1700000000, 1700000000.0), (10**400, None)],
)
def test_timestamps_are_kept_exactly_or_refused(timestamp, expected):
    if expected is None:
        with pytest.raises(EventError, match="finite"):
            normalize_event({"event_type": "a", "timestamp": timestamp})
        return
    got = normalize_event({"event_type": "a", "timestamp": timestamp})["timestamp"]
    assert type(got) is float and got == expected
    for bad in (float("nan"), float("inf")):
        with pytest.raises(EventError, match="finite"):
            normalize_event({"event_type": "a", "timestamp": bad})


def test_new_ids_are_uuid4_in_hex():
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.hex == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


class Kind(enum.Enum):
    A = "a"


@pytest.mark.parametrize(
    "event",
    [
        {"id": "x", "data": {"n": 1, "text": "\u00e9\n", "when": datetime(2026, 1, 1)}},
        {"data": {1: "int key", Kind.A: "enum key", None: "null key"}},  # the pipeline's own
        {"data": {"deep": [{"k": {2: [3]}}]}},
    ],
)
def test_to_json_writes_what_orjson_writes_with_non_string_keys(event):
    assert to_json(event) == orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS)


@pytest.mark.parametrize(
    "data", [{"big": 2**64}, {(1, 2): "tuple key"}, {"k": {2: {"big": -(2**63) - 1}}}]
)
def test_what_json_cannot_hold_is_refused_where_it_enters(data):
    event = normalize_event({"event_type": "a", "data": data})
    with pytest.raises(EventError) as caught:
        serialize_event(event, 1 << 20)
    assert caught.value.reason == "unserializable"
