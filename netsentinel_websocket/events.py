"""NetSentinel StandardEvent normalization.

The pipeline hands events either as mappings or as objects with StandardEvent attributes (its
dataclass, with enum members for type and severity). Everything downstream works on one plain
dict shape, made here once per event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

FIELDS = (
    "id",
    "timestamp",
    "event_type",
    "source",
    "severity",
    "data",
    "tags",
    "correlation_id",
    "metadata",
)


class EventError(ValueError):
    """An event that cannot be normalized; the message is a short reason for the sender."""


def normalize_event(event: Any) -> dict[str, Any]:
    """Return a fresh StandardEvent dict from a mapping or an object with those attributes."""
    if isinstance(event, Mapping):
        get = event.get
    elif hasattr(event, "event_type"):

        def get(name: str, default: Any = None) -> Any:
            return getattr(event, name, default)

    else:
        raise EventError("event must be an object with an event_type")

    event_type = _plain(get("event_type"))
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventError("event_type must be a non-empty string")
    severity = _plain(get("severity", "info"))
    severity = severity.lower() if isinstance(severity, str) else severity
    if severity not in SEVERITY_RANK:
        raise EventError(f"severity must be one of {', '.join(SEVERITIES)}")
    data = get("data")
    if data is None:
        data = {}
    elif not isinstance(data, Mapping):
        raise EventError("data must be an object")
    metadata = get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, Mapping):
        raise EventError("metadata must be an object")
    tags = get("tags")
    if tags is None:
        tags = []
    elif isinstance(tags, (list, tuple, set, frozenset)) and all(isinstance(t, str) for t in tags):
        tags = list(tags)
    else:
        raise EventError("tags must be a list of strings")
    correlation_id = get("correlation_id")
    if correlation_id is not None and not isinstance(correlation_id, str):
        correlation_id = str(correlation_id)
    source = _plain(get("source", ""))
    event_id = get("id")
    return {
        "id": str(event_id) if event_id not in (None, "") else uuid.uuid4().hex,
        "timestamp": _timestamp(get("timestamp")),
        "event_type": event_type,
        "source": "" if source is None else str(source),
        "severity": severity,
        "data": dict(data),
        "tags": tags,
        "correlation_id": correlation_id,
        "metadata": dict(metadata),
    }


def _plain(value: Any) -> Any:
    """Enum members (as NetSentinel's StandardEvent uses) become their value."""
    return getattr(value, "value", value)


def _timestamp(value: Any) -> float:
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError("timestamp must be epoch seconds")
    return float(value)
