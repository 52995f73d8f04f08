"""Wire protocol v1 without I/O: client messages in, server messages out.

``parse`` turns one client text frame into a request object or raises :class:`ProtocolError`
with the error code to answer; no input makes it raise anything else. Encoders build the
server's JSON messages as bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import NetSentinelError
from .filters import MATCH_ALL, Filter, FilterError, parse_filter
from .positions import Position

PROTOCOL_VERSION = 1
SUBPROTOCOL = "netsentinel.v1"
BEARER_PREFIX = "bearer."

RequestId = int | str | None

#: Every ``code`` an ``error`` reply can carry: clients may switch on them, so the set is closed.
ERROR_CODES = frozenset(
    {
        "bad_request",  # not JSON, not an object, unknown or mistyped field, bad filter
        "unknown_type",  # a well-formed message of a type protocol v1 does not have
        "forbidden",  # the token's scopes do not allow it
        "unknown_channel",  # no such channel on this server
        "rate_limited",  # over websocket.limits.messages_per_second (2x that closes 4008)
        "too_many_subscriptions",  # over websocket.limits.max_subscriptions
        "unavailable",  # ack: no host handles acknowledgements
        "ack_failed",  # ack: the host's hook raised
    }
)


class ProtocolError(NetSentinelError):
    """A client message answered with ``{"type":"error","code":...}``; the connection stays."""

    def __init__(self, code: str, message: str, request_id: RequestId = None) -> None:
        assert code in ERROR_CODES, code  # a new code must be added (and documented) first
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: RequestId
    channels: tuple[str, ...]
    filter: Filter = MATCH_ALL
    since: Mapping[str, Position] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: RequestId
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    id: RequestId


@dataclass(frozen=True, slots=True)
class Auth:
    id: RequestId
    token: str


@dataclass(frozen=True, slots=True)
class Ack:
    id: RequestId
    alert_id: str
    note: str


Request = Subscribe | Unsubscribe | Ping | Auth | Ack

_FIELDS = {
    "subscribe": {"type", "id", "channels", "filter", "since"},
    "unsubscribe": {"type", "id", "channels"},
    "ping": {"type", "id"},
    "auth": {"type", "id", "token"},
    "ack": {"type", "id", "alert_id", "note"},
}
MAX_CHANNELS = 64
MAX_ID_CHARS = 64
MAX_NOTE_CHARS = 2000


def parse(data: str | bytes) -> Request:
    """Parse one client message; every problem is a ProtocolError with the request id if any."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_request", "message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_request", "message must be a JSON object")
    request_id = _request_id(msg.get("id"))
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "'type' must be a string", request_id)
    allowed = _FIELDS.get(kind)
    if allowed is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}", request_id)
    extra = set(msg) - allowed
    if extra:
        raise ProtocolError("bad_request", f"unknown field {sorted(extra)[0][:40]!r}", request_id)
    try:
        if kind == "subscribe":
            return _subscribe(msg, request_id)
        if kind == "unsubscribe":
            return Unsubscribe(request_id, _channels(msg.get("channels")))
        if kind == "ping":
            return Ping(request_id)
        if kind == "auth":
            return Auth(request_id, _text(msg, "token", 16384))
        return Ack(request_id, _text(msg, "alert_id", 256), _note(msg.get("note")))
    except (FilterError, ValueError) as exc:
        raise ProtocolError("bad_request", str(exc), request_id) from None


def peek_id(data: str | bytes) -> RequestId:
    """The request id of a message that will not be parsed further (a ``rate_limited`` reply
    still names the request); None when there is none or it is not a valid id."""
    try:
        msg = orjson.loads(data)
        return _request_id(msg.get("id")) if isinstance(msg, dict) else None
    except (orjson.JSONDecodeError, ProtocolError):
        return None


def _request_id(value: Any) -> RequestId:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProtocolError("bad_request", "'id' must be an integer or a string")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ProtocolError("bad_request", f"'id' is longer than {MAX_ID_CHARS} characters")
    if isinstance(value, int) and not -(2**53) <= value <= 2**53:
        raise ProtocolError("bad_request", "'id' is out of range")
    return value


def _subscribe(msg: dict[str, Any], request_id: RequestId) -> Subscribe:
    channels = _channels(msg.get("channels"))
    flt = parse_filter(msg.get("filter"))
    since_raw = msg.get("since")
    since: dict[str, Position] = {}
    if since_raw is not None:
        if not isinstance(since_raw, dict):
            raise ValueError("'since' must be an object of channel positions")
        for name, pos in since_raw.items():
            if name not in channels:
                raise ValueError(f"'since' names channel {name[:40]!r} that is not subscribed")
            since[name] = _position(name, pos)
    return Subscribe(request_id, channels, flt, since)


def _position(name: str, pos: Any) -> Position:
    if not isinstance(pos, dict) or set(pos) != {"epoch", "offset"}:
        raise ValueError(f'since.{name[:40]} must be {{"epoch": string, "offset": integer}}')
    epoch, offset = pos["epoch"], pos["offset"]
    if not isinstance(epoch, str) or len(epoch) > 128:
        raise ValueError(f"since.{name[:40]}.epoch must be a string")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**63:
        raise ValueError(f"since.{name[:40]}.offset must be a non-negative integer")
    return Position(epoch, offset)


def _channels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("'channels' must be a non-empty list of channel names")
    if len(value) > MAX_CHANNELS:
        raise ValueError(f"'channels' has more than {MAX_CHANNELS} names")
    if not all(isinstance(c, str) and 0 < len(c) <= 64 for c in value):
        raise ValueError("'channels' must hold channel names (strings)")
    return tuple(dict.fromkeys(value))


def _text(msg: dict[str, Any], key: str, limit: int) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"'{key}' is longer than {limit} characters")
    return value


def _note(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("'note' must be a string")
    if len(value) > MAX_NOTE_CHARS:
        raise ValueError(f"'note' is longer than {MAX_NOTE_CHARS} characters")
    return value


def token_from_subprotocols(subprotocols: Iterable[str]) -> str | None:
    """The JWT carried as ``bearer.<jwt>`` in ``Sec-WebSocket-Protocol``, if any."""
    for proto in subprotocols:
        if proto.startswith(BEARER_PREFIX):
            return proto[len(BEARER_PREFIX) :]
    return None


# --- server messages ---


def encode(message: Mapping[str, Any]) -> bytes:
    """A server message as JSON bytes."""
    return orjson.dumps(message)


def welcome(
    connection_id: str,
    node_id: str,
    server_time: float,
    channels: list[str],
    expires_at: float,
) -> bytes:
    return encode(
        {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "connection_id": connection_id,
            "node_id": node_id,
            "server_time": server_time,
            "channels": channels,
            "expires_at": int(expires_at),
        }
    )


def subscribed(
    request_id: RequestId,
    channels: list[str],
    positions: Mapping[str, Position],
    recovered: Mapping[str, bool],
) -> bytes:
    return encode(
        {
            "type": "subscribed",
            "id": request_id,
            "channels": channels,
            "positions": {c: p.as_dict() for c, p in positions.items()},
            "recovered": dict(recovered),
        }
    )


def gap(channel: str, epoch: str, since: Position) -> bytes:
    return encode({"type": "gap", "channel": channel, "epoch": epoch, "from": since.as_dict()})


def reply(kind: str, request_id: RequestId, **fields: Any) -> bytes:
    """``unsubscribed``, ``pong``, ``auth_ok`` and ``ack_ok``: the type, the id, a few fields."""
    return encode({"type": kind, "id": request_id, **fields})


def error(code: str, message: str, request_id: RequestId = None) -> bytes:
    return encode({"type": "error", "id": request_id, "code": code, "message": message})
