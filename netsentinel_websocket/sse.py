"""Server-Sent Events: the stream's bytes, its cursor and its query, without any I/O.

An SSE stream carries the WebSocket's ``event`` and ``gap`` messages, each with an ``id:`` that
resumes the whole stream: a cursor holding, for every channel of the stream, the last position
the reader has at that event. A reader resumes with it (``Last-Event-ID``) through the hub's
usual handover, so it gets exactly what it missed, or a ``gap``.

The hub builds these bytes once per group of readers and writes the same object to each, so a
chunk here is already framed for HTTP/1.1 chunked transfer encoding (the handler writes it to
the socket as it is, as the WebSocket path writes a prepared frame).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import orjson

from .errors import NetSentinelError
from .filters import FILTER_KEYS, Filter, FilterError, parse_filter
from .positions import Position, Publication

#: Largest payload the hub packs into one chunk (a burst is split, as WebSocket frames are).
MAX_CHUNK_PAYLOAD = 1024 * 1024
#: Longest cursor accepted from a client (a cursor of 64 channels fits easily).
MAX_CURSOR_CHARS = 8192
MAX_EPOCH_CHARS = 128


class SSEError(NetSentinelError, ValueError):
    """A query or cursor the client got wrong (answered with 400); the message says what."""


def http_chunk(payload: bytes) -> bytes:
    """``payload`` as one HTTP/1.1 chunk (``<hex length>\\r\\n<payload>\\r\\n``)."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)


#: A heartbeat: an empty comment line (the same bytes object for every reader).
HEARTBEAT = http_chunk(b":\n\n")


# --- the cursor ---


def encode_cursor(positions: Mapping[str, Position]) -> bytes:
    """An opaque, URL-safe cursor for ``positions`` (base64url of ``[[channel, epoch, offset]]``
    in channel order)."""
    triples = [[name, pos.epoch, pos.offset] for name, pos in sorted(positions.items())]
    return base64.urlsafe_b64encode(orjson.dumps(triples)).rstrip(b"=")


def decode_cursor(text: str, channels: Sequence[str]) -> dict[str, Position]:
    """The positions a cursor holds; every way it can be wrong (not ours, tampered, naming a
    channel the stream does not have) is an :class:`SSEError`."""
    if len(text) > MAX_CURSOR_CHARS:
        raise SSEError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
        triples = orjson.loads(raw)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SSEError("malformed cursor") from None
    if not isinstance(triples, list):
        raise SSEError("malformed cursor")
    positions: dict[str, Position] = {}
    for item in triples:
        if not (isinstance(item, list) and len(item) == 3):
            raise SSEError("malformed cursor")
        name, epoch, offset = item
        if not isinstance(name, str) or name not in channels or name in positions:
            raise SSEError("cursor does not match the stream's channels")
        positions[name] = position(epoch, offset)
    return positions


def position(epoch: Any, offset: Any) -> Position:
    """A position from untrusted values (a cursor's, a ``since``'s)."""
    if not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_CHARS:
        raise SSEError("bad epoch in position")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**63:
        raise SSEError("bad offset in position")
    return Position(epoch, offset)


# --- what goes on the stream ---


def opening(cursor: Mapping[str, Position]) -> bytes:
    """The first chunk: a comment (so proxies and clients see bytes at once) and the stream's
    starting cursor as an ``id:`` without data, which sets the reader's ``Last-Event-ID``
    without dispatching an event: a reader dropped before its first event still resumes from
    where it started."""
    return http_chunk(b": netsentinel\nid: " + encode_cursor(cursor) + b"\n\n")


def gap(message: bytes, cursor: Mapping[str, Position]) -> bytes:
    """A ``gap`` message as an SSE event."""
    return http_chunk(b"id: " + encode_cursor(cursor) + b"\nevent: gap\ndata: " + message + b"\n\n")


def event_chunks(
    cursor: MutableMapping[str, Position],
    events: Iterable[tuple[Publication, bytes]],
    limit: int = MAX_CHUNK_PAYLOAD,
) -> Iterator[tuple[bytes, int]]:
    """``event`` messages (with their publications) as SSE events, each with the cursor after
    it, packed into chunks of at most ``limit`` bytes (a larger event gets a chunk of its own);
    yields each chunk with the number of events in it. ``cursor`` is advanced as the events
    are drawn."""
    batch: list[bytes] = []
    size = 0
    for pub, message in events:
        cursor[pub.channel] = Position(pub.epoch, pub.offset)
        text = b"".join(
            (b"id: ", encode_cursor(cursor), b"\nevent: event\ndata: ", message, b"\n\n")
        )
        if batch and size + len(text) > limit:
            yield http_chunk(b"".join(batch)), len(batch)
            batch, size = [], 0
        batch.append(text)
        size += len(text)
    if batch:
        yield http_chunk(b"".join(batch)), len(batch)


# --- the query ---


def parse_channels(raw: str | None, max_channels: int) -> tuple[str, ...]:
    """``channels=a,b``: names in order, each once."""
    names = tuple(dict.fromkeys(n for n in (raw or "").split(",") if n))
    if not names:
        raise SSEError("channels is required (channels=threats,alerts)")
    if len(names) > max_channels:
        raise SSEError(f"at most {max_channels} channels")
    return names


def parse_query_filter(query: Mapping[str, str]) -> Filter:
    """The filter from query parameters (``min_severity``, and comma lists for the others)."""
    raw: dict[str, Any] = {}
    for key in FILTER_KEYS:
        value = query.get(key)
        if value is None:
            continue
        raw[key] = value if key == "min_severity" else [v for v in value.split(",") if v]
    try:
        return parse_filter(raw)
    except FilterError as exc:
        raise SSEError(str(exc)) from None
