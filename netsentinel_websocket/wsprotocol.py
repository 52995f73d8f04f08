"""RFC 6455 rules for client frames that Tornado's WebSocket protocol leaves out.

- Every frame a client sends must be masked (section 5.1: "a server MUST close the connection
  upon receiving a frame that is not masked"); an unmasked one is answered with close 1002.
- A client's close frame must carry a code a peer may send (section 7.4) and, if it has a
  payload, at least two bytes; otherwise the answer is 1002 instead of an echo of its code.

Tornado reads frames inside private methods (``_receive_frame``, ``_read_bytes``,
``_handle_message``), so these checks hook them here, and only here; the behaviour is pinned by
``tests/security/test_frames.py``, so a Tornado release that changes them fails loudly.
"""

from __future__ import annotations

from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketProtocol13

from .disconnect import PROTOCOL_ERROR, UNMASKED


def valid_close_code(code: int) -> bool:
    """Codes a client may put in a close frame (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class StrictProtocol(WebSocketProtocol13):
    """Tornado's protocol, refusing unmasked frames and bad close frames with 1002."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._at_header = False  # set here, with Tornado's own, so instances share dict keys

    async def _receive_frame(self) -> None:
        self._at_header = True
        await super()._receive_frame()

    async def _read_bytes(self, n: int) -> bytes:
        data = await super()._read_bytes(n)
        if self._at_header:
            self._at_header = False
            if not data[1] & 0x80:
                self.close_code = UNMASKED.code
                self.close(UNMASKED.code, UNMASKED.reason)
                raise StreamClosedError()  # ends Tornado's frame loop, which drops the stream
        return data

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if opcode == 0x8 and not self.client_terminated and not _valid_close_payload(data):
            self.client_terminated = True
            self.close_code = PROTOCOL_ERROR.code
            self.close(PROTOCOL_ERROR.code, PROTOCOL_ERROR.reason)
            return None
        return super()._handle_message(opcode, data)


def _valid_close_payload(data: bytes) -> bool:
    if not data:
        return True
    if len(data) == 1 or not valid_close_code(int.from_bytes(data[:2], "big")):
        return False
    try:
        data[2:].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
