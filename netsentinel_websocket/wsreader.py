"""A client's WebSocket frames read without I/O: bytes in, messages and control events out.

The endpoint feeds what the socket gave (:meth:`FrameReader.feed`) and takes events one at a
time (:meth:`FrameReader.next`), so it can stop reading while a message is being handled.
Everything a client may get wrong is decided here (RFC 6455 section 5, RFC 7692 section 6):

- a frame that is not masked, or sets a reserved bit nobody negotiated (RSV1 only on the first
  frame of a data message under permessage-deflate): close 1002;
- a message whose frames announce more than ``max_message`` bytes, before any of its payload
  is buffered, or that inflates past it: close 1009;
- compressed data that does not inflate, or a close frame with a code a peer may not send or
  a reason that is not UTF-8: close 1002;
- a text message that is not UTF-8, an unknown opcode, a fragmented or oversized control
  frame, a continuation of nothing or a new message inside a fragmented one: the connection is
  dropped without a close frame (what Tornado did before this module).

The buffer holds at most one frame header and ``max_message`` bytes of payload; the endpoint
reads no more while :meth:`FrameReader.next` has something to give.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .disconnect import (
    BAD_DEFLATE,
    PROTOCOL_ERROR,
    RESERVED_BITS,
    TOO_BIG,
    TOO_BIG_INFLATED,
    UNMASKED,
    Disconnect,
)
from .frames import BINARY, CLOSE, CONTINUATION, FIN, PING, PONG, RSV1, TEXT

_RSV = 0x70  # the three reserved bits
_DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: put back before inflating


@dataclass(frozen=True, slots=True)
class Ping:
    """A client's ping; the answer is a pong with the same ``data``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A client's pong (the answer to a heartbeat ping)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Closing:
    """A valid close frame from the client: its code (None when it sent none) and reason."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """The client broke the protocol: close with ``why``, or drop the connection without a
    close frame when it is None. Nothing more is read."""

    why: Disconnect | None


Event = str | bytes | Ping | Pong | Closing | Refuse


def valid_close_code(code: int) -> bool:
    """Codes a client may put in a close frame (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def unmask(mask: bytes, data: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask``, as one integer operation (C speed)."""
    n = len(data)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class FrameReader:
    """The frames of one client connection.

    ``inflate_bits``: the client's window under permessage-deflate (None: not negotiated);
    ``inflate_takeover``: whether the client may refer to earlier messages (it did not agree to
    ``client_no_context_takeover``), which keeps one inflater for the connection's life,
    made at its first compressed message.
    """

    __slots__ = (
        "_buffer",
        "_pos",
        "_max",
        "_inflate_bits",
        "_takeover",
        "_inflater",
        "_fragments",
        "_opcode",
        "_compressed",
        "_done",
    )

    def __init__(
        self, max_message: int, inflate_bits: int | None = None, inflate_takeover: bool = False
    ) -> None:
        self._buffer = bytearray()
        self._pos = 0
        self._max = max_message
        self._inflate_bits = inflate_bits
        self._takeover = inflate_takeover
        self._inflater: zlib._Decompress | None = None
        self._fragments: bytearray | None = None  # a fragmented message so far
        self._opcode = 0  # that message's opcode
        self._compressed = False  # that message (or the current one) is compressed
        self._done = False

    def feed(self, data: bytes) -> None:
        """Bytes from the socket, in order (dropped once the reader is done)."""
        if self._done:
            return
        if self._buffer:
            self._buffer += data
        else:
            self._buffer = bytearray(data)

    def next(self) -> Event | None:
        """The next message or control event, None until more bytes are fed (and forever after
        a :class:`Closing` or :class:`Refuse`). Between two calls that return None the reader
        holds only the frame in progress and the message's fragments so far."""
        while not self._done:
            frame = self._frame()
            if frame is None:
                if self._pos:  # what was taken is not kept while waiting for the rest
                    del self._buffer[: self._pos]
                    self._pos = 0
                return None
            event = self._message(*frame) if not isinstance(frame, Refuse) else frame
            if isinstance(event, (Closing, Refuse)):
                self._done = True
                self._buffer = bytearray()
                self._pos = 0
                self._fragments = None
                self._inflater = None
            if event is not None:
                return event
        return None

    def _frame(self) -> tuple[int, int, bytes] | Refuse | None:
        """One whole frame from the buffer as (FIN, opcode, unmasked payload), a refusal
        decided from its header alone, or None while it is incomplete."""
        buf, pos = self._buffer, self._pos
        available = len(buf) - pos
        if available < 2:
            return None
        first, second = buf[pos], buf[pos + 1]
        opcode = first & 0x0F
        if not second & 0x80:
            return Refuse(UNMASKED)
        # RSV1 marks a compressed message: on its first frame only, and only if negotiated.
        allowed = RSV1 if self._inflate_bits is not None and opcode in (TEXT, BINARY) else 0
        if first & _RSV & ~allowed:
            return Refuse(RESERVED_BITS)
        length = second & 0x7F
        head = 2
        if opcode & 0x8 and length >= 126:
            return Refuse(None)  # control frames carry at most 125 bytes
        if length == 126:
            if available < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, pos + 2)
            head = 4
        elif length == 127:
            if available < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, pos + 2)
            head = 10
        so_far = len(self._fragments) if self._fragments is not None and not opcode & 0x8 else 0
        if length + so_far > self._max:  # a control frame is not part of the message
            return Refuse(TOO_BIG)
        end = pos + head + 4 + length
        if len(buf) < end:
            return None
        mask = bytes(buf[pos + head : pos + head + 4])
        payload = unmask(mask, bytes(buf[pos + head + 4 : end]))
        if end == len(buf):  # all taken: nothing of it is held while the client is idle
            self._buffer, self._pos = bytearray(), 0
        else:
            self._pos = end
        if opcode in (TEXT, BINARY):  # a control frame may come between fragments
            self._compressed = bool(first & RSV1)
        return first & FIN, opcode, payload

    def _message(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        """What a whole frame means: a message or control event, None for a fragment."""
        if opcode & 0x8:
            if not fin:
                return Refuse(None)  # control frames are never fragmented
            return self._control(opcode, payload)
        if opcode == CONTINUATION:
            if self._fragments is None:
                return Refuse(None)  # nothing to continue
            self._fragments += payload
            if not fin:
                return None
            opcode, payload = self._opcode, bytes(self._fragments)
            self._fragments = None
        elif self._fragments is not None:
            return Refuse(None)  # a new message inside a fragmented one
        elif not fin:
            self._opcode, self._fragments = opcode, bytearray(payload)
            return None
        return self._data(opcode, payload)

    def _data(self, opcode: int, payload: bytes) -> Event:
        if opcode not in (TEXT, BINARY):
            return Refuse(None)  # an opcode RFC 6455 reserves
        if self._compressed:
            inflated = self._inflate(payload)
            if isinstance(inflated, Refuse):
                return inflated
            payload = inflated
        if opcode == BINARY:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return Refuse(None)

    def _inflate(self, payload: bytes) -> bytes | Refuse:
        assert self._inflate_bits is not None  # RSV1 is refused unless negotiated
        inflater = self._inflater or zlib.decompressobj(-self._inflate_bits)
        if self._takeover:
            self._inflater = inflater
        try:
            data = inflater.decompress(payload + _DEFLATE_TAIL, self._max)
        except zlib.error:
            return Refuse(BAD_DEFLATE)
        if inflater.unconsumed_tail:
            return Refuse(TOO_BIG_INFLATED)
        if inflater.eof:  # it ended with a final block (RFC 7692 7.2.3.3): nothing may follow
            self._inflater = None  # and the next message starts a context of its own
            if inflater.unused_data not in (b"", _DEFLATE_TAIL):
                return Refuse(BAD_DEFLATE)
        return data

    @staticmethod
    def _control(opcode: int, payload: bytes) -> Event:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        if opcode != CLOSE:
            return Refuse(None)  # an opcode RFC 6455 reserves
        if not payload:
            return Closing(None, "")
        code = int.from_bytes(payload[:2], "big")
        if len(payload) == 1 or not valid_close_code(code):
            return Refuse(PROTOCOL_ERROR)
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return Refuse(PROTOCOL_ERROR)
        return Closing(code, reason)
