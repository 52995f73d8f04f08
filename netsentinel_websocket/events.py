"""NetSentinel StandardEvent normalization.

The pipeline hands events either as mappings or as objects with StandardEvent attributes (its
dataclass, with enum members for type and severity). Everything downstream works on one plain
dict shape, made here once per event.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from .errors import NetSentinelError

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

#: NetSentinel's StandardEvent fields, in the order a normalized event holds them.
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


#: Bounds on the fields every subscriber, filter and router looks at. Attackers write much of
#: what arrives (honeypot records carry what an intruder typed); an event over a bound is
#: refused where it enters, never carried to the fan-out.
MAX_TYPE_CHARS = 128
MAX_TEXT_CHARS = 256  # id, source, correlation_id
MAX_TAGS = 64
MAX_TAG_CHARS = 128

#: What counts as a mapping: ``dict`` first, which ``isinstance`` answers at once, where the
#: ``Mapping`` ABC alone costs a Python-level ``__instancecheck__`` on every event.
MAPPINGS = (dict, Mapping)

#: Why an event was refused: the ``reason`` label of ``netsentinel_ws_pipeline_rejected``.
REJECT_REASONS = ("invalid", "too_large", "unserializable")


class EventError(NetSentinelError, ValueError):
    """An event that cannot be normalized; the message is a short reason for the sender, and
    ``reason`` one of :data:`REJECT_REASONS` for metrics."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def normalize_event(event: Any) -> dict[str, Any]:
    """Return a fresh StandardEvent dict from a mapping or an object with those attributes."""
    if isinstance(event, MAPPINGS):
        get = event.get
    elif hasattr(event, "event_type"):

        def get(name: str, default: Any = None) -> Any:
            return getattr(event, name, default)

    else:
        raise EventError("event must be an object with an event_type")

    event_type = _plain(get("event_type"))
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventError("event_type must be a non-empty string")
    if len(event_type) > MAX_TYPE_CHARS:
        raise EventError(f"event_type is longer than {MAX_TYPE_CHARS} characters", "too_large")
    severity = _plain(get("severity", "info"))
    severity = severity.lower() if isinstance(severity, str) else severity
    if severity not in SEVERITY_RANK:
        raise EventError(f"severity must be one of {', '.join(SEVERITIES)}")
    data = _object("data", get("data"))
    metadata = _object("metadata", get("metadata"))
    tags = _tags(get("tags"))
    correlation_id = get("correlation_id")
    if correlation_id is not None:
        correlation_id = _text("correlation_id", correlation_id)
    source = _plain(get("source", ""))
    event_id = get("id")
    return {
        "id": _text("id", event_id) if event_id not in (None, "") else new_id(),
        "timestamp": _timestamp(get("timestamp")),
        "event_type": event_type,
        "source": "" if source is None else _text("source", source),
        "severity": severity,
        "data": data,
        "tags": tags,
        "correlation_id": correlation_id,
        "metadata": metadata,
    }


def new_id() -> str:
    """A random event id as ``uuid.uuid4().hex`` spells it (version and variant bits set), in
    half the time: it is made for every Cowrie record and every record without an id."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def _plain(value: Any) -> Any:
    """Enum members (as NetSentinel's StandardEvent uses) become their value."""
    return value if type(value) is str else getattr(value, "value", value)


def _object(name: str, value: Any) -> dict[str, Any]:
    """A private shallow copy of ``data`` or ``metadata`` ({} when absent)."""
    if value is None:
        return {}
    if not isinstance(value, MAPPINGS):
        raise EventError(f"{name} must be an object")
    return dict(value)


def _tags(value: Any) -> list[str]:
    """A private copy of ``tags``: strings only (else invalid), within the bounds (else
    too_large), in one pass."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise EventError("tags must be a list of strings")
    too_large = len(value) > MAX_TAGS
    for tag in value:
        if not isinstance(tag, str):
            raise EventError("tags must be a list of strings")
        too_large = too_large or len(tag) > MAX_TAG_CHARS
    if too_large:
        raise EventError(f"at most {MAX_TAGS} tags of {MAX_TAG_CHARS} characters", "too_large")
    return list(value)


def _text(name: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TEXT_CHARS:
        raise EventError(f"{name} is longer than {MAX_TEXT_CHARS} characters", "too_large")
    return text


def _timestamp(value: Any) -> float:
    if type(value) is float and math.isfinite(value):  # what JSON and our own events carry
        return value
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError("timestamp must be epoch seconds")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise EventError("timestamp must be a finite number of epoch seconds")
    return seconds


def serialize_event(event: dict[str, Any], max_bytes: int) -> bytes:
    """The event's JSON, as every subscriber will get it; an event that cannot be written
    (nested deeper than the serializer goes, integers over 64 bits) or is larger than
    ``max_bytes`` is refused here, where it enters, so it can never fail a fan-out later."""
    try:
        full = to_json(event)
    except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
        raise EventError(f"event cannot be serialized ({exc})", "unserializable") from None
    if len(full) > max_bytes:
        raise EventError(f"event is larger than {max_bytes} bytes", "too_large")
    return full


def to_json(event: Any) -> bytes:
    """An event's JSON as subscribers get it: values JSON has no type for as their ``str``, keys
    that are not strings as strings. Written first without ``OPT_NON_STR_KEYS``, which makes
    orjson check every key (about 1.5 times the time on an ingest line's event); only an event
    holding such a key, which orjson refuses at once without it, is written twice. Same bytes."""
    try:
        return orjson.dumps(event, default=str)
    except orjson.JSONEncodeError:
        return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS)
