"""StandardEvent normalization: mappings and objects (with enums) give the same dict."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest

from netsentinel_websocket.events import FIELDS, EventError, normalize_event


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
