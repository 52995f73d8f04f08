"""OpenCanary log record -> NetSentinel StandardEvent.

OpenCanary (thinkst/opencanary) writes one flat JSON object per event, through
``SocketJSONHandler`` (newline-delimited over TCP) or a webhook. The runner accepts those
records so that a plain OpenCanary honeypot can feed the same pipeline as NetSentinel; this
module turns one record into the event shape everything else understands. It is pure: no
sockets, no clock except the ``time.time()`` fallback for records without a usable time.

The table below covers every ``LOG_*`` constant in OpenCanary's ``opencanary/logger.py``
(and the MongoDB module's own logtype); docs/opencanary.md gives the reason for each severity.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple

from .errors import NetSentinelError
from .events import MAPPINGS, new_id

__all__ = [
    "LOGTYPE_NAMES",
    "MAPPING",
    "Mapped",
    "RecordError",
    "is_opencanary_record",
    "normalize",
]

Severity = Literal["info", "low", "medium", "high", "critical"]


class RecordError(NetSentinelError, ValueError):
    """A record that cannot become an event; ``str(err)`` is a short reason for the sender.

    A ``ValueError`` so that ingest code can count and report bad lines with one ``except``
    and keep the connection and every other line.
    """


class Mapped(NamedTuple):
    """Where a logtype lands: ``honeypot.<service>.<action>`` at ``severity``."""

    service: str
    action: str
    severity: Severity


# (logtype, OpenCanary constant, service, action, severity), in logger.py order.
_TABLE: Final[tuple[tuple[int, str, str, str, Severity], ...]] = (
    # OpenCanary's own start/stop/status messages: about the sensor, not an attacker.
    (1000, "LOG_BASE_BOOT", "canary", "started", "info"),
    (1001, "LOG_BASE_MSG", "canary", "message", "info"),
    (1002, "LOG_BASE_DEBUG", "canary", "debug", "info"),
    (1003, "LOG_BASE_ERROR", "canary", "error", "info"),
    (1004, "LOG_BASE_PING", "canary", "ping", "info"),
    (1005, "LOG_BASE_CONFIG_SAVE", "canary", "config_saved", "info"),
    (1006, "LOG_BASE_EXAMPLE", "canary", "example", "info"),
    # Nothing legitimate talks to a fake service: every touch is an intrusion signal.
    (2000, "LOG_FTP_LOGIN_ATTEMPT", "ftp", "login_attempt", "high"),
    (2001, "LOG_FTP_AUTH_ATTEMPT_INITIATED", "ftp", "auth_initiated", "high"),
    (3000, "LOG_HTTP_GET", "http", "get", "high"),
    (3001, "LOG_HTTP_POST_LOGIN_ATTEMPT", "http", "login_attempt", "high"),
    (3002, "LOG_HTTP_UNIMPLEMENTED_METHOD", "http", "unimplemented_method", "high"),
    (3003, "LOG_HTTP_REDIRECT", "http", "redirect", "high"),
    (4000, "LOG_SSH_NEW_CONNECTION", "ssh", "connection", "high"),
    (4001, "LOG_SSH_REMOTE_VERSION_SENT", "ssh", "version_sent", "high"),
    (4002, "LOG_SSH_LOGIN_ATTEMPT", "ssh", "login_attempt", "high"),
    # Someone is already inside a fake share and opening files: data access, not a probe.
    (5000, "LOG_SMB_FILE_OPEN", "smb", "file_open", "critical"),
    (5001, "LOG_PORT_SYN", "portscan", "syn", "high"),
    # Crafted nmap probes (OS detection, NULL/XMAS/FIN): a scanning tool, never stray traffic.
    (5002, "LOG_PORT_NMAPOS", "portscan", "nmap_os", "critical"),
    (5003, "LOG_PORT_NMAPNULL", "portscan", "nmap_null", "critical"),
    (5004, "LOG_PORT_NMAPXMAS", "portscan", "nmap_xmas", "critical"),
    (5005, "LOG_PORT_NMAPFIN", "portscan", "nmap_fin", "critical"),
    (6001, "LOG_TELNET_LOGIN_ATTEMPT", "telnet", "login_attempt", "high"),
    (6002, "LOG_TELNET_CONNECTION_MADE", "telnet", "connection", "high"),
    (7001, "LOG_HTTPPROXY_LOGIN_ATTEMPT", "httpproxy", "login_attempt", "high"),
    (8001, "LOG_MYSQL_LOGIN_ATTEMPT", "mysql", "login_attempt", "high"),
    (9001, "LOG_MSSQL_LOGIN_SQLAUTH", "mssql", "login_attempt", "high"),
    (9002, "LOG_MSSQL_LOGIN_WINAUTH", "mssql", "windows_login_attempt", "high"),
    (9003, "LOG_MYSQL_CONNECTION_MADE", "mysql", "connection", "high"),
    (10001, "LOG_TFTP", "tftp", "request", "high"),
    (11001, "LOG_NTP_MONLIST", "ntp", "monlist", "high"),
    (12001, "LOG_VNC", "vnc", "login_attempt", "high"),
    (13001, "LOG_SNMP_CMD", "snmp", "command", "high"),
    (14001, "LOG_RDP", "rdp", "login_attempt", "high"),
    (15001, "LOG_SIP_REQUEST", "sip", "request", "high"),
    (16001, "LOG_GIT_CLONE_REQUEST", "git", "clone_request", "high"),
    (17001, "LOG_REDIS_COMMAND", "redis", "command", "high"),
    (18001, "LOG_TCP_BANNER_CONNECTION_MADE", "tcpbanner", "connection", "high"),
    (
        18002,
        "LOG_TCP_BANNER_KEEP_ALIVE_CONNECTION_MADE",
        "tcpbanner",
        "keepalive_connection",
        "high",
    ),
    # The operator's own keep-alive client presenting the configured secret (alerting on that
    # connection stops): expected traffic, kept above info as an audit trail of the secret's use.
    (18003, "LOG_TCP_BANNER_KEEP_ALIVE_SECRET_RECEIVED", "tcpbanner", "keepalive_secret", "low"),
    (18004, "LOG_TCP_BANNER_KEEP_ALIVE_DATA_RECEIVED", "tcpbanner", "keepalive_data", "high"),
    (18005, "LOG_TCP_BANNER_DATA_RECEIVED", "tcpbanner", "data_received", "high"),
    # The canary asks for a name that does not exist; only a poisoner (Responder & co.) answers.
    (19001, "LOG_LLMNR_QUERY_RESPONSE", "llmnr", "query_response", "critical"),
    # Defined in opencanary/modules/mongodb.py (not logger.py); one logtype for every action.
    (20001, "LOG_TYPE_MONGODB", "mongodb", "interaction", "high"),
    # Slots for site-specific modules: their meaning is unknown, but they fire on a honeypot.
    *((99000 + n, f"LOG_USER_{n}", "user", f"event_{n}", "high") for n in range(10)),
)

MAPPING: Final[Mapping[int, Mapped]] = MappingProxyType(
    {logtype: Mapped(service, action, sev) for logtype, _, service, action, sev in _TABLE}
)
"""logtype -> (service, action, severity); read-only so no caller can change another's view."""

LOGTYPE_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {logtype: name for logtype, name, *_ in _TABLE}
)
"""logtype -> OpenCanary constant name, carried in ``metadata.logtype_name`` for humans."""

_UNKNOWN_SEVERITY: Final[Severity] = "high"
_MAX_LOGTYPE: Final = 2**31 - 1
_DEFAULT_SOURCE: Final = "opencanary"
_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1
_FRACTION: Final = re.compile(r"(?<=:\d\d)\.(\d+)", re.ASCII)
#: Naive times are UTC: their epoch seconds are the difference from this (what
#: ``replace(tzinfo=timezone.utc).timestamp()`` computes, in a fifth of the time).
_EPOCH: Final = datetime(1970, 1, 1)


def is_opencanary_record(obj: Mapping[str, Any]) -> bool:
    """True for an OpenCanary record (``logtype``), False for a StandardEvent (``event_type``).

    Ingest accepts both kinds on the same socket; a mapping carrying both is taken as an event
    that is already normalized, so it is never normalized twice.
    """
    return isinstance(obj, MAPPINGS) and "logtype" in obj and "event_type" not in obj


def normalize(record: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one OpenCanary record into a StandardEvent dict (see docs/opencanary.md).

    Lenient with what OpenCanary versions really send (string ports, ``-1`` for unknown,
    numeric-string logtypes, odd ``logdata``) so that no intrusion signal is lost; raises
    :class:`RecordError`, and only that, when there is no usable ``logtype``.
    """
    if not isinstance(record, MAPPINGS):
        raise RecordError("record must be a JSON object")
    logtype = _logtype(record)
    mapped = MAPPING.get(logtype) or Mapped("unknown", f"logtype_{logtype}", _UNKNOWN_SEVERITY)
    source = _text(record.get("node_id")) or _DEFAULT_SOURCE
    timestamp, timestamp_source = _timestamp(record)
    try:
        logdata = _logdata(record.get("logdata"))
    except RecursionError:
        raise RecordError("logdata nested too deeply") from None

    data: dict[str, Any] = {}
    src_ip = _text(record.get("src_host"))
    if src_ip is not None:  # absent, not empty: "there is no attacker address"
        data["src_ip"] = src_ip
    data.update(
        src_port=_port(record.get("src_port")),
        dst_host=_text(record.get("dst_host")),
        dst_port=_port(record.get("dst_port")),
        service=mapped.service,
        logtype=logtype,
        logdata=logdata,
    )
    severity = mapped.severity
    tags = [_DEFAULT_SOURCE, mapped.service, mapped.action]
    honeycred = record.get("honeycred")
    if isinstance(honeycred, bool):
        data["honeycred"] = honeycred
        if honeycred:
            # A planted credential was typed in: the attacker holds data stolen from us.
            severity = "critical"
            tags.append("honeycred")

    return {
        "id": _event_id(record.get("id")),
        "timestamp": timestamp,
        "event_type": f"honeypot.{mapped.service}.{mapped.action}",
        "source": source,
        "severity": severity,
        "data": data,
        "tags": tags,
        "correlation_id": _correlation_id(record, source, data),
        "metadata": {
            "origin": _DEFAULT_SOURCE,
            "logtype_name": LOGTYPE_NAMES.get(logtype),
            "timestamp_source": timestamp_source,
        },
    }


def _logtype(record: Mapping[str, Any]) -> int:
    """The record's logtype as an int; OpenCanary sends ints, some forwarders send strings."""
    value = record.get("logtype")
    if value is None:
        raise RecordError("missing logtype")
    if isinstance(value, bool):
        raise RecordError("logtype must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _is_digits(value.strip(), 10):
        number = int(value.strip())
    else:
        raise RecordError("logtype must be an integer")
    if not 0 <= number <= _MAX_LOGTYPE:
        raise RecordError("logtype out of range")
    return number


def _is_digits(text: str, max_len: int) -> bool:
    """ASCII digits only: ``int()`` would also take signs, underscores and non-ASCII digits."""
    return 0 < len(text) <= max_len and text.isascii() and text.isdigit()


def _text(value: Any) -> str | None:
    """A non-empty stripped string, else None (OpenCanary writes ``''`` for unknown hosts)."""
    if isinstance(value, str):
        return value.strip() or None
    return None


def _port(value: Any) -> int | None:
    """A port number, or None for OpenCanary's ``-1``, strings that are not ports, or junk."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _is_digits(value.strip(), 5):
        number = int(value.strip())
    else:
        return None
    return number if 0 <= number <= 65535 else None


def _timestamp(record: Mapping[str, Any]) -> tuple[float, str]:
    """Epoch seconds and which field they came from.

    ``utc_time`` first; then ``local_time``, which OpenCanary also fills from ``utcnow()``
    (older versions have only that); ``local_time_adjusted`` is the node's wall clock in an
    unknown zone and is never used. Without either, the time of normalization.
    """
    for key in ("utc_time", "local_time"):
        parsed = parse_utc(record.get(key))
        if parsed is not None:
            return parsed, key
    return time.time(), "received"


def parse_utc(value: Any) -> float | None:
    """Parse ``2026-11-24 19:11:10.123456``; naive means UTC, ``T``, ``Z`` and offsets are fine.

    The seconds fraction is padded or cut to 6 digits and ``Z`` spelled ``+00:00`` because
    Python 3.10's ``fromisoformat`` takes nothing else.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    fraction = _FRACTION.search(text)
    if fraction is not None and len(fraction[1]) != 6:  # OpenCanary's 6 digits stay as sent
        digits = fraction[1][:6].ljust(6, "0")
        text = text[: fraction.start(1)] + digits + text[fraction.end(1) :]
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return (parsed - _EPOCH).total_seconds()
        return parsed.timestamp()
    except (ValueError, OverflowError):
        return None


def _logdata(value: Any) -> dict[str, Any]:
    """A private copy of ``logdata``; anything but an object is kept as ``{"raw": value}``."""
    if value is None:
        return {}
    if isinstance(value, MAPPINGS):
        copied: dict[str, Any] = _copy(value)
        return copied
    return {"raw": _copy(value)}


def _copy(value: Any) -> Any:
    """Copy JSON containers so later mutation (redaction, enrichment) cannot reach the record.

    Keys become strings and integers orjson cannot write (beyond 64 bits) become their
    decimal text, so that every event can go on the wire.
    """
    if type(value) is str:  # most leaves: no container or integer checks
        return value
    if isinstance(value, MAPPINGS):
        return {str(key): _copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(item) for item in value]
    if isinstance(value, int) and not _INT_MIN <= value <= _UINT_MAX:
        return str(value)
    return value


def _event_id(value: Any) -> str:
    """The record's own id when it has one (so a resend keeps its identity), else a uuid4."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return new_id()


def _correlation_id(record: Mapping[str, Any], source: str, data: Mapping[str, Any]) -> str | None:
    """The record's own correlation id, else one per network flow, else None.

    Records of one flow (an SSH connection, its version exchange and each login attempt) share
    the flow id, so a dashboard can group them. It is a hash, so it does not leak the attacker's
    address past redaction.
    """
    own = _text(record.get("correlation_id"))
    if own is not None:
        return own
    src_ip, src_port, dst_port = data.get("src_ip"), data["src_port"], data["dst_port"]
    if src_ip is None or src_port is None or dst_port is None:
        return None
    flow = f"{source}|{src_ip}|{src_port}|{data['dst_host'] or ''}|{dst_port}"
    return "flow-" + hashlib.sha256(flow.encode("utf-8", "surrogatepass")).hexdigest()[:20]
