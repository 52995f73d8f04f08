"""Wire protocol v1 without I/O, both directions: the one place messages are spelled.

Server side: ``parse`` turns one client text frame into a request object or raises
:class:`ProtocolError` with the error code to answer (no input makes it raise anything else);
the encoders (``welcome``, ``subscribed``, ``gap``, ``reply``, ``error``) build the server's
JSON messages as bytes (event messages are built once per event in ``positions``).

Client side (``client``, ``tail`` and tests): ``subscribe_request`` and ``auth_request`` spell
the requests, and ``decode_frame`` turns a server frame into typed messages
(:class:`Welcome`, :class:`Subscribed`, :class:`EventMessage`, :class:`GapMessage`,
:class:`Unsubscribed`, :class:`AuthOk`, :class:`ErrorReply`, or :class:`OtherMessage` for
replies that carry nothing more, and for types a newer server may add), raising
:class:`MalformedMessage` for anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
            return Auth(request_id, _text(msg, "token"))  # its size is the verifier's to judge
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


def _text(msg: dict[str, Any], key: str, limit: int | None = None) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' must be a non-empty string")
    if limit is not None and len(value) > limit:
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


# --- the client's side ---


class MalformedMessage(NetSentinelError):
    """A server frame that is not protocol v1 (the client treats it as a broken connection)."""


def subscribe_request(
    request_id: int,
    channels: Iterable[str],
    filter: Mapping[str, Any] | None = None,
    since: Mapping[str, Position] | None = None,
) -> str:
    """A ``subscribe`` request (the filter as the client wrote it, positions to resume from)."""
    message: dict[str, Any] = {"type": "subscribe", "id": request_id, "channels": list(channels)}
    if filter:
        message["filter"] = dict(filter)
    if since:
        message["since"] = {channel: pos.as_dict() for channel, pos in since.items()}
    return orjson.dumps(message).decode()


def auth_request(request_id: int, token: str) -> str:
    """An ``auth`` request: first authentication or a refresh."""
    return orjson.dumps({"type": "auth", "id": request_id, "token": token}).decode()


@dataclass(frozen=True, slots=True)
class Welcome:
    type: ClassVar[str] = "welcome"
    connection_id: str
    node_id: str
    server_time: float
    channels: tuple[str, ...]
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Subscribed:
    type: ClassVar[str] = "subscribed"
    id: RequestId
    channels: tuple[str, ...]
    positions: Mapping[str, Position]
    recovered: Mapping[str, bool]


@dataclass(frozen=True, slots=True)
class EventMessage:
    type: ClassVar[str] = "event"
    channel: str
    epoch: str
    offset: int
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GapMessage:
    type: ClassVar[str] = "gap"
    channel: str
    epoch: str
    since: Position


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    type: ClassVar[str] = "unsubscribed"
    id: RequestId
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthOk:
    type: ClassVar[str] = "auth_ok"
    id: RequestId
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ErrorReply:
    type: ClassVar[str] = "error"
    id: RequestId
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """``pong``, ``ack_ok`` and types this client does not know: the type and request id."""

    type: str
    id: RequestId


ServerMessage = (
    Welcome
    | Subscribed
    | EventMessage
    | GapMessage
    | Unsubscribed
    | AuthOk
    | ErrorReply
    | OtherMessage
)


def decode_frame(frame: str | bytes) -> list[ServerMessage]:
    """The messages of one server text frame (one or more JSON objects, ``\\n``-separated)."""
    if isinstance(frame, bytes):
        try:
            frame = frame.decode()
        except UnicodeDecodeError:
            raise MalformedMessage("frame is not UTF-8") from None
    return [decode_message(part) for part in frame.split("\n") if part]


def decode_message(text: str) -> ServerMessage:
    """One server message."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MalformedMessage("message is not valid JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise MalformedMessage("message is not an object with a type")
    try:
        return _DECODERS.get(msg["type"], _decode_other)(msg)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"bad {msg['type'][:40]!r} message ({type(exc).__name__})") from None


def _read_position(value: Any) -> Position:
    if not isinstance(value, dict):
        raise TypeError("a position must be an object")
    epoch, offset = value["epoch"], value["offset"]
    if not isinstance(epoch, str) or isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError("a position is a string epoch and an integer offset")
    return Position(epoch, offset)


def _read_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of names")
    return tuple(value)


def _read_text(msg: dict[str, Any], key: str) -> str:
    value = msg[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _read_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number of seconds")
    return float(value)


def _decode_welcome(msg: dict[str, Any]) -> Welcome:
    """Lenient where the client needs nothing (a proxy or an older server may leave it out)."""
    return Welcome(
        str(msg.get("connection_id", "")),
        str(msg.get("node_id", "")),
        _read_time(msg.get("server_time")) or 0.0,
        _read_names(msg.get("channels", [])),
        _read_time(msg.get("expires_at")),
    )


def _decode_subscribed(msg: dict[str, Any]) -> Subscribed:
    positions = msg.get("positions") or {}
    recovered = msg.get("recovered") or {}
    if not isinstance(positions, dict) or not isinstance(recovered, dict):
        raise TypeError("positions and recovered must be objects")
    return Subscribed(
        msg.get("id"),
        _read_names(msg["channels"]),
        {channel: _read_position(pos) for channel, pos in positions.items()},
        {channel: bool(flag) for channel, flag in recovered.items()},
    )


def _decode_event(msg: dict[str, Any]) -> EventMessage:
    position = _read_position(msg)
    event = msg["event"]
    if not isinstance(event, dict):
        raise TypeError("event must be an object")
    return EventMessage(_read_text(msg, "channel"), position.epoch, position.offset, event)


def _decode_gap(msg: dict[str, Any]) -> GapMessage:
    return GapMessage(
        _read_text(msg, "channel"), _read_text(msg, "epoch"), _read_position(msg["from"])
    )


def _decode_unsubscribed(msg: dict[str, Any]) -> Unsubscribed:
    return Unsubscribed(msg.get("id"), _read_names(msg["channels"]))


def _decode_auth_ok(msg: dict[str, Any]) -> AuthOk:
    return AuthOk(msg.get("id"), _read_time(msg.get("expires_at")))


def _decode_error(msg: dict[str, Any]) -> ErrorReply:
    return ErrorReply(msg.get("id"), _read_text(msg, "code"), str(msg.get("message", "")))


def _decode_other(msg: dict[str, Any]) -> OtherMessage:
    return OtherMessage(msg["type"], msg.get("id"))


_DECODERS: dict[str, Callable[[dict[str, Any]], ServerMessage]] = {
    "welcome": _decode_welcome,
    "subscribed": _decode_subscribed,
    "event": _decode_event,
    "gap": _decode_gap,
    "unsubscribed": _decode_unsubscribed,
    "auth_ok": _decode_auth_ok,
    "error": _decode_error,
}
