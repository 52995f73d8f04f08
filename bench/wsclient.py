"""The benchmark's WebSocket client: a raw asyncio protocol built to cost as little as possible.

A general-purpose client library would parse and decode every message and so would measure
itself, not the server. Here a subscriber walks frame headers and counts ``"type":"event"`` in
the payload bytes (C-speed ``bytes.count``), which is right whether the server sends one event per
frame or coalesces several, separated by ``\\n``, into one frame. A few subscribers are probes:
they decode every message, take the arrival time, and check offsets for gaps and duplicates.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
import zlib
from collections.abc import Callable
from typing import Any, cast

import orjson

EVENT_MARK = b'"type":"event"'
CARRY = len(EVENT_MARK) - 1
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final frame, as RFC 6455 requires of every client frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    repeats = length // 4 + 1
    key = int.from_bytes(mask * repeats, "big") >> (8 * (4 * repeats - length))
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big")
    return header + mask + masked


def handshake_request(
    host: str, port: int, path: str, token: str, deflate: bool = False
) -> tuple[bytes, bytes]:
    """The upgrade request and the ``Sec-WebSocket-Accept`` value the server must answer;
    with ``deflate`` it offers permessage-deflate as browsers do."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    offer = (
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        if deflate
        else ""
    )
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n{offer}"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    return request.encode(), accept


def inflate(payload: bytes) -> bytes:
    """A permessage-deflate message's data, as a client without context takeover reads it
    (this project's server and the peers never take context over here)."""
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


class Subscriber(asyncio.Protocol):
    """One WebSocket connection that counts events (or, as a probe, parses and times them)."""

    def __init__(
        self, request: bytes, accept: bytes, probe: bool, on_target: Callable[[Subscriber], None]
    ) -> None:
        self.request, self.accept, self.probe = request, accept, probe
        self.on_target = on_target
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.handshaken = False
        self.parsing = True  # until subscribed, every message is decoded
        self.pending = b""  # an incomplete frame header, or the HTTP response
        self.remaining = 0  # payload bytes of the current frame still to come
        self.opcode = 0  # of the current frame; a continuation takes its message's opcode
        self.message_opcode = 0
        self.fin = True
        self.compressed = False  # the current message has RSV1 set (permessage-deflate)
        self.wire_bytes = 0  # bytes read from the socket since the last reset
        self.carry = b""  # the tail of the current text message, for a mark cut by a read
        self.parts: list[bytes] = []  # payload of the message being assembled (parsing mode)
        self.control: list[bytes] = []  # payload of a control frame (may come between fragments)
        self.events = 0
        self.target = 0
        self.done_at = 0.0
        self.close_code: int | None = None
        self.latencies: list[float] = []
        self.last_offset: dict[str, int] = {}
        self.order_errors = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError(f"closed before welcome (code {self.close_code}, {exc})")
            )
        self.replies.put_nowait({"type": "closed", "code": self.close_code})

    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        if not self.handshaken:
            data = self._handshake(data)
            if not self.handshaken:
                return
        if self.pending:
            data = self.pending + data
            self.pending = b""
        pos, end = 0, len(data)
        while pos < end:
            if self.remaining:
                stop = min(end, pos + self.remaining)
                self._payload(data, pos, stop)
                self.remaining -= stop - pos
                pos = stop
                if not self.remaining:
                    self._frame_end()
                continue
            if end - pos < 2:
                self.pending = data[pos:]
                break
            b0, b1 = data[pos], data[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                head = 4
            elif length == 127:
                head = 10
            if b1 & 0x80:
                head += 4  # servers must not mask; at least keep the framing right
            if end - pos < head:
                self.pending = data[pos:]
                break
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            opcode = b0 & 0x0F
            if opcode >= OP_CLOSE:
                self.opcode = opcode
            else:
                if opcode != OP_CONT:
                    self.message_opcode = opcode
                    self.compressed = bool(b0 & 0x40)
                self.opcode = self.message_opcode
                self.fin = bool(b0 & 0x80)
            pos += head
            self.remaining = length
            if not length:
                self._frame_end()
        if self.events >= self.target > 0 and not self.done_at:
            self.done_at = time.time()
            self.on_target(self)

    # -- frames ------------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        buffered = self.pending + data
        head, sep, rest = buffered.partition(b"\r\n\r\n")
        if not sep:
            self.pending = buffered
            return b""
        self.pending = b""
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status or self.accept not in head:
            self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
            assert self.transport is not None
            self.transport.close()
            return b""
        self.handshaken = True
        return rest

    def _payload(self, data: bytes, start: int, stop: int) -> None:
        if self.opcode >= OP_CLOSE:
            self.control.append(data[start:stop])
            return
        if self.parsing or self.probe or self.compressed:
            self.parts.append(data[start:stop])
            return
        if self.opcode != OP_TEXT:
            return
        count = data.count(EVENT_MARK, start, stop)
        if self.carry:
            count += (self.carry + data[start : min(stop, start + CARRY)]).count(EVENT_MARK)
        self.events += count
        if stop - start >= CARRY:
            self.carry = data[stop - CARRY : stop]
        else:
            self.carry = (self.carry + data[start:stop])[-CARRY:]

    def _frame_end(self) -> None:
        opcode = self.opcode
        if opcode >= OP_CLOSE:
            payload = b"".join(self.control)
            self.control = []
            self._control(opcode, payload)
        elif self.fin:
            self.carry = b""
            if self.parts:
                message = b"".join(self.parts)
                self.parts = []
                if self.compressed:
                    message = inflate(message)
                    if not (self.parsing or self.probe):
                        self.events += message.count(EVENT_MARK)
                        return
                if opcode == OP_TEXT:
                    self._parse(message)

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == OP_PING:
            self.transport.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.transport.write(client_frame(OP_CLOSE, payload[:2]))
            self.transport.close()

    def _parse(self, message: bytes) -> None:
        now = time.time()
        for line in message.split(b"\n"):
            if not line:
                continue
            msg = orjson.loads(line)
            if msg.get("type") != "event":
                if msg.get("type") == "welcome" and not self.opened.done():
                    self.opened.set_result(None)
                else:
                    self.replies.put_nowait(msg)
                continue
            self.events += 1
            channel, offset = msg["channel"], msg["offset"]
            last = self.last_offset.get(channel)
            if last is not None and offset != last + 1:
                self.order_errors += 1
            self.last_offset[channel] = offset
            sent_at = msg["event"].get("data", {}).get("sent_at")
            if sent_at is not None:
                self.latencies.append(now - sent_at)

    # -- client actions ----------------------------------------------------------------------

    def send_json(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(OP_TEXT, orjson.dumps(message)))

    async def subscribe(self, channels: list[str], timeout: float) -> None:
        """Subscribe and wait for the answer; counting subscribers then stop decoding."""
        self.send_json({"type": "subscribe", "id": 1, "channels": channels})
        while True:
            reply = await asyncio.wait_for(self.replies.get(), timeout)
            if reply.get("type") == "subscribed" and reply.get("id") == 1:
                break
            if reply.get("type") in ("error", "closed"):
                raise ConnectionError(f"subscribe refused: {reply}")
        self.parsing = False

    def reset(self, target: int) -> None:
        """Start a new measurement that ends when ``target`` events have arrived."""
        self.events, self.target, self.done_at = 0, target, 0.0
        self.latencies = []
        self.wire_bytes = 0

    def close(self) -> None:
        if self.transport is not None:
            self.transport.write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()
