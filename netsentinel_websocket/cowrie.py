"""Cowrie log record -> NetSentinel StandardEvent.

Cowrie (cowrie/cowrie), the SSH/Telnet honeypot, writes one flat JSON object per event, named
by ``eventid`` (``cowrie.login.failed``, ...), through ``output_socketlog`` (one object per line
over TCP) or ``output_jsonlog`` (a JSON-lines file). This module turns one record into the event
shape everything else understands. It is pure: no sockets, no files, no clock except the
``time.time()`` fallback for records without a usable time; the only state is the optional
:class:`SessionProtocols` the caller owns.

The table covers every event id Cowrie 2.7-3.1 emits (``cowrie.core.eventids.ALL`` of 3.1,
a superset of what 2.x emits); docs/cowrie.md gives the reason for each severity.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple

import orjson

from .events import MAPPINGS, MAX_TEXT_CHARS, new_id
from .opencanary import RecordError, parse_utc

__all__ = [
    "MAPPING",
    "Mapped",
    "RecordError",
    "SessionProtocols",
    "is_cowrie_record",
    "normalize",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
Protocol = Literal["ssh", "telnet"]


class Mapped(NamedTuple):
    """Where an event id lands: ``honeypot.<protocol>.<action>`` at ``severity``; ``service``
    replaces the protocol for the few events about the sensor rather than a session."""

    action: str
    severity: Severity
    service: str | None = None


# (eventid, severity), grouped as docs/cowrie.md explains them.
_TABLE: Final[tuple[tuple[str, Severity], ...]] = (
    # A touch of the fake service, a credential tried, a command run: intrusion signals.
    ("cowrie.session.connect", "high"),
    ("cowrie.login.failed", "high"),
    ("cowrie.login.success", "high"),
    ("cowrie.client.fingerprint", "high"),  # a public-key login attempt
    ("cowrie.command.input", "high"),
    ("cowrie.command.failed", "high"),
    ("cowrie.command.success", "high"),
    ("cowrie.command.chpasswd", "high"),
    ("cowrie.session.input", "high"),  # lines typed into a running command (cat, dd, scp)
    ("cowrie.session.file_download.failed", "high"),
    # The honeypot used as a proxy or pivot to reach other hosts.
    ("cowrie.direct-tcpip.request", "high"),
    ("cowrie.direct-tcpip.data", "high"),
    ("cowrie.direct-tcpip.redirect", "high"),
    ("cowrie.direct-tcpip.tunnel", "high"),
    ("cowrie.tunnelproxy-tcpip.data", "high"),
    # A payload brought onto the host, or an exploit of the telnet daemon.
    ("cowrie.session.file_download", "critical"),
    ("cowrie.session.file_upload", "critical"),
    ("cowrie.telnet.exploit_attempt", "critical"),
    ("cowrie.telnet.exploit_success", "critical"),
    # A client breaking the protocol: fuzzers and exploits, but also broken scanners.
    ("cowrie.client.malformed_packet", "medium"),
    ("cowrie.telnet.error", "medium"),
    # Details of a session already reported (at high) by its cowrie.session.connect.
    ("cowrie.session.closed", "low"),
    ("cowrie.session.params", "low"),
    ("cowrie.client.version", "low"),
    ("cowrie.client.kex", "low"),
    ("cowrie.client.size", "low"),
    ("cowrie.client.var", "low"),
    ("cowrie.log.open", "low"),
    ("cowrie.log.closed", "low"),
    ("cowrie.telnet.option", "low"),
    ("cowrie.direct-tcpip.ja4", "low"),
    ("cowrie.direct-tcpip.ja4h", "low"),
    ("cowrie.proxy.ssh", "low"),
    # Cowrie's output plugins enriching what an attacker already did.
    ("cowrie.reversedns.connect", "low"),
    ("cowrie.reversedns.forward", "low"),
    ("cowrie.greynoise.result", "low"),
    ("cowrie.virustotal.scanfile", "low"),
    ("cowrie.virustotal.scanurl", "low"),
    ("cowrie.urlhaus.submitted", "low"),
    ("cowrie.malwarebazaar.submitted", "low"),
    # The sensor's own plumbing: proxy backends and the AbuseIPDB plugin.
    ("cowrie.proxy.backend_connect_error", "info"),
    ("cowrie.proxy.backend_connected", "info"),
    ("cowrie.proxy.backend_disconnected", "info"),
    ("cowrie.proxy.client_disconnect", "info"),
    ("cowrie.abuseipdb.started", "info"),
    ("cowrie.abuseipdb.wakeup", "info"),
    ("cowrie.abuseipdb.ratelimited", "info"),
    ("cowrie.abuseipdb.reportfail", "info"),
    ("cowrie.abuseipdb.reportedip", "info"),
)


def _action(eventid: str) -> str:
    """``cowrie.session.file_download.failed`` -> ``session_file_download_failed``."""
    return re.sub(r"[.-]", "_", eventid.removeprefix("cowrie."))


MAPPING: Final[Mapping[str, Mapped]] = MappingProxyType(
    {
        eventid: Mapped(
            _action(eventid),
            severity,
            "cowrie" if eventid.startswith("cowrie.abuseipdb.") else None,
        )
        for eventid, severity in _TABLE
    }
)
"""eventid -> (action, severity, service); read-only so no caller can change another's view."""

#: An event id Cowrie does not (yet) emit: still something that fired on a honeypot.
UNKNOWN: Final = Mapped("other", "high")

#: Event ids only one protocol emits, for records that do not say which (Cowrie 2.x).
_SSH_ONLY: Final = ("cowrie.client.version", "cowrie.client.kex", "cowrie.client.fingerprint")
_SSH_PREFIXES: Final = (
    "cowrie.client.malformed_packet",
    "cowrie.direct-tcpip.",
    "cowrie.tunnelproxy-tcpip.",
    "cowrie.proxy.ssh",
)

#: Record keys that are the record's envelope, not data: rendered into other fields or noise.
_ENVELOPE: Final = frozenset(
    {"eventid", "timestamp", "time", "epoch", "sensor", "uuid", "format", "system", "isError"}
)
#: The fields normalized by name; every other key is copied into ``data`` as it is.
_NAMED: Final = frozenset(
    {"session", "protocol", "src_ip", "src_port", "dst_ip", "dst_port", "message"}
)

MAX_EVENTID_CHARS: Final = 128
#: Bounds on what is copied from a record, so the event stays well under
#: ``websocket.limits.max_event_bytes`` (256 KiB by default) and is never refused: a string is
#: cut at MAX_STRING_CHARS characters, and all copied values together at DATA_BUDGET bytes of
#: JSON; containers at MAX_ITEMS entries and MAX_DEPTH levels.
MAX_STRING_CHARS: Final = 64 * 1024
DATA_BUDGET: Final = 128 * 1024
MAX_ITEMS: Final = 1024
MAX_DEPTH: Final = 32
#: Budget bytes a field needs to be added at all (its name and the start of its value).
MIN_FIELD: Final = 64
_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1
_DEFAULT_SOURCE: Final = "cowrie"
_OFFSET: Final = re.compile(r"([+-]\d\d)(\d\d)$")


class SessionProtocols:
    """The protocol of recent sessions, for records that do not carry ``protocol``.

    Cowrie 3.x puts ``protocol`` on every record of a session; 2.x only on
    ``cowrie.session.connect``. The caller keeps one of these across records so that a 2.x
    telnet session's later records are not taken for SSH. At most ``max_sessions`` are kept
    (the least recently seen forgotten first), and a session is forgotten when it closes.

    An ``OrderedDict``: forgetting the oldest of a plain dict (``next(iter(d))``) walks over
    every slot deleted since the dict was last compacted, thousands of them once it is full and
    every record is of a new session (a scan, a spray of logins).
    """

    def __init__(self, max_sessions: int = 4096) -> None:
        self._max = max_sessions
        self._protocols: OrderedDict[str, Protocol] = OrderedDict()
        self._lock = threading.Lock()  # file ingest may normalize from another thread

    def __len__(self) -> int:
        return len(self._protocols)

    def get(self, session: str) -> Protocol | None:
        return self._protocols.get(session)

    def learn(self, session: str, protocol: Protocol, closed: bool) -> None:
        with self._lock:
            if closed:
                self._protocols.pop(session, None)
                return
            self._protocols[session] = protocol
            self._protocols.move_to_end(session)
            if len(self._protocols) > self._max:
                self._protocols.popitem(last=False)


def is_cowrie_record(obj: Any) -> bool:
    """A mapping whose ``eventid`` names a Cowrie event and that is not already an event."""
    if not isinstance(obj, MAPPINGS) or "event_type" in obj:
        return False
    eventid = obj.get("eventid")
    return isinstance(eventid, str) and eventid.startswith("cowrie.")


def normalize(record: Any, sessions: SessionProtocols | None = None) -> dict[str, Any]:
    """One Cowrie record as a StandardEvent dict sharing nothing with the record.

    Raises :class:`RecordError` (with a short reason) only for what is not a Cowrie record at
    all; any event id, known or not, becomes exactly one event.
    """
    if not isinstance(record, MAPPINGS):
        raise RecordError("record must be a JSON object")
    eventid = record.get("eventid")
    if not isinstance(eventid, str) or not eventid.startswith("cowrie."):
        raise RecordError("eventid must be a string starting with cowrie.")
    if len(eventid) > MAX_EVENTID_CHARS:
        raise RecordError(f"eventid is longer than {MAX_EVENTID_CHARS} characters")
    session = _session(record.get("session"))
    mapped = MAPPING.get(eventid, UNKNOWN)
    protocol, protocol_source = _protocol(record, eventid, session, sessions)
    service = mapped.service or protocol
    timestamp, timestamp_source = _timestamp(record)

    data: dict[str, Any] = {}
    for key in ("src_ip", "src_port", "dst_ip", "dst_port"):
        value = record.get(key)
        if key.endswith("_ip") and isinstance(value, str) and value.strip():
            data[key] = value.strip()[:MAX_TEXT_CHARS]
        elif key.endswith("_port") and key in record:
            data[key] = _port(value)
    if session is not None:
        data["session"] = session
    data["protocol"] = protocol
    data["eventid"] = eventid
    bounded = _Bounded(DATA_BUDGET)
    truncated = []
    extra = [("message", record["message"])] if "message" in record else []
    extra += [
        (key, value)
        for key, value in record.items()
        if key not in _ENVELOPE and key not in _NAMED and not str(key).startswith("log_")
    ]
    for count, (key, value) in enumerate(extra):
        if count >= MAX_ITEMS or bounded.left < MIN_FIELD:
            truncated.append("...")  # fields left out
            break
        cuts = bounded.cuts
        name = bounded.text(str(key))
        data[name] = bounded.copy(value)
        if bounded.cuts > cuts:
            truncated.append(name)
    if eventid == "cowrie.command.success" and data.get("realm") == "passwd":
        _passwd_line(data)

    metadata: dict[str, Any] = {
        "origin": "cowrie",
        "protocol_source": protocol_source,
        "timestamp_source": timestamp_source,
    }
    sensor_uuid = record.get("uuid")
    if isinstance(sensor_uuid, str) and sensor_uuid:
        metadata["sensor_uuid"] = sensor_uuid[:MAX_TEXT_CHARS]
    if truncated:
        metadata["truncated"] = truncated
    sensor = record.get("sensor")
    return {
        "id": new_id(),
        "timestamp": timestamp,
        "event_type": f"honeypot.{service}.{mapped.action}",
        "source": (sensor.strip() if isinstance(sensor, str) else "")[:MAX_TEXT_CHARS]
        or _DEFAULT_SOURCE,
        "severity": mapped.severity,
        "data": data,
        "tags": ["cowrie", service, mapped.action],
        "correlation_id": session,
        "metadata": metadata,
    }


def _session(value: Any) -> str | None:
    """Cowrie's session id (12 hex digits); None for sensor events, which have none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError("session must be a string")
    if len(value) > MAX_TEXT_CHARS:
        raise RecordError(f"session is longer than {MAX_TEXT_CHARS} characters")
    return value


def _protocol(
    record: Mapping[str, Any], eventid: str, session: str | None, sessions: SessionProtocols | None
) -> tuple[Protocol, str]:
    """``ssh`` or ``telnet`` and where it was read: the record, the session's earlier records,
    the event id (only one protocol emits it), else ``ssh``, Cowrie's default listener."""
    protocol: Protocol | None = None
    value = record.get("protocol")
    if isinstance(value, str) and value.strip().lower() in ("ssh", "telnet"):
        protocol = "ssh" if value.strip().lower() == "ssh" else "telnet"
    if sessions is not None and session is not None:
        if protocol is not None:
            sessions.learn(session, protocol, eventid == "cowrie.session.closed")
            return protocol, "record"
        known = sessions.get(session)
        if known is not None:
            if eventid == "cowrie.session.closed":
                sessions.learn(session, known, closed=True)
            return known, "session"
    if protocol is not None:
        return protocol, "record"
    if eventid in _SSH_ONLY or eventid.startswith(_SSH_PREFIXES):
        return "ssh", "eventid"
    if eventid.startswith("cowrie.telnet."):
        return "telnet", "eventid"
    return "ssh", "default"


def _passwd_line(data: dict[str, Any]) -> None:
    """A line typed at the fake ``passwd`` prompt is a password: carry it as ``data.password``
    (hidden without ``events:sensitive``), not in ``input`` and ``message``."""
    data["password"] = data.pop("input", None)
    data["message"] = "INPUT (passwd)"


def _port(value: Any) -> int | None:
    """A port number, or None for anything that is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip()) if len(value.strip()) <= 5 else -1
    else:
        return None
    return number if 0 <= number <= 65535 else None


def _timestamp(record: Mapping[str, Any]) -> tuple[float, str]:
    """Epoch seconds and which field they came from: ``time`` (socketlog's epoch float),
    ``timestamp`` (ISO 8601, ``Z`` or a ``+HHMM`` offset), ``epoch`` (jsonlog's milliseconds
    with ``epoch_timestamp = true``), else the time of normalization."""
    seconds = _number(record.get("time"))
    if seconds is not None:
        return seconds, "time"
    text = record.get("timestamp")
    if isinstance(text, str):
        text = text.strip()
        offset = _OFFSET.match(text, max(0, len(text) - 5))  # the last 5 characters or none
        if offset is not None:  # +HHMM as +HH:MM (a template substitution costs 5 times more)
            text = f"{text[: offset.start()]}{offset[1]}:{offset[2]}"
        parsed = parse_utc(text)
        if parsed is not None:
            return parsed, "timestamp"
    millis = _number(record.get("epoch"))
    if millis is not None:
        return millis / 1000, "epoch"
    return time.time(), "received"


def _number(value: Any) -> float | None:
    """A non-negative finite number (not a bool), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value < 1e15 else None


class _Bounded:
    """Copies JSON values within a budget of serialized bytes, counting what it had to cut."""

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.cuts = 0

    def copy(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool):
            self.left -= 5
            return value
        if isinstance(value, int):
            self.left -= 20
            return value if _INT_MIN <= value <= _UINT_MAX else str(value)
        if isinstance(value, float):
            self.left -= 24
            return value if math.isfinite(value) else None
        if isinstance(value, (dict, list, tuple, Mapping)):
            if depth >= MAX_DEPTH:
                self.cuts += 1
                return None
            return self._container(value, depth)
        return self.text(str(value))

    def _container(self, value: Mapping[Any, Any] | list[Any] | tuple[Any, ...], depth: int) -> Any:
        pairs = value.items() if isinstance(value, MAPPINGS) else ((None, item) for item in value)
        keys: list[str | None] = []
        items: list[Any] = []
        for count, (key, item) in enumerate(pairs):
            if count >= MAX_ITEMS or self.left <= 0:
                self.cuts += 1
                break
            keys.append(None if key is None else self.text(str(key)))
            items.append(self.copy(item, depth + 1))
        self.left -= 2 * len(items) + 2
        if isinstance(value, MAPPINGS):
            return dict(zip(keys, items, strict=True))
        return items

    def text(self, text: str) -> str:
        """``text`` cut to what is left of the budget (and MAX_STRING_CHARS)."""
        if len(text) > MAX_STRING_CHARS:
            text = text[:MAX_STRING_CHARS]
            self.cuts += 1
        size = _json_size(text)
        if size < 0:  # lone surrogates (a caller other than a JSON parser): not writable
            text = text.encode("utf-8", "replace").decode("utf-8")
            size = _json_size(text)
        if size > self.left:
            text = text[: len(text) * max(0, self.left) // size]
            self.cuts += 1
            size = _json_size(text)
        self.left -= size
        return text


def _json_size(text: str) -> int:
    """Bytes of ``text`` as JSON; -1 when it cannot be written."""
    try:
        return len(orjson.dumps(text))
    except orjson.JSONEncodeError:
        return -1
