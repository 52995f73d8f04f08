"""RFC 6455 rules for client frames that Tornado's WebSocket protocol leaves out.

- Every frame a client sends must be masked (section 5.1: "a server MUST close the connection
  upon receiving a frame that is not masked"); an unmasked one is answered with close 1002.
- A client's close frame must carry a code a peer may send (section 7.4) and, if it has a
  payload, at least two bytes; otherwise the answer is 1002 instead of an echo of its code.
- A reserved bit no extension gave a meaning (section 5.2), and under permessage-deflate RSV1
  anywhere but on the first frame of a data message (RFC 7692 section 6.1), or compressed data
  that does not inflate: close 1002 (Tornado drops the TCP connection, or answers a compressed
  ping, or logs an uncaught ``zlib.error``).

Tornado reads frames inside private methods (``_receive_frame``, ``_read_bytes``,
``_handle_message``), so these checks hook them here, and only here; the behaviour is pinned by
``tests/security/test_hostile_feed.py`` and ``test_hostile_deflate.py``, so a Tornado release
that changes them fails loudly.
"""

from __future__ import annotations

import zlib
from typing import Any, NoReturn

from tornado.httputil import HTTPHeaders
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketProtocol13

from .disconnect import BAD_DEFLATE, PROTOCOL_ERROR, RESERVED_BITS, UNMASKED, Disconnect

_RSV1, _RSV = 0x40, 0x70  # in a frame's first byte


def valid_close_code(code: int) -> bool:
    """Codes a client may put in a close frame (RFC 6455 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class StrictProtocol(WebSocketProtocol13):
    """Tornado's protocol, refusing unmasked frames, bad close frames, reserved bits and bad
    compressed data with 1002."""

    # In slots: Tornado's protocol sets 29 instance attributes, and a 30th would move them
    # all out of the class's shared key table into a dict of their own (1.5 KiB a connection).
    __slots__ = ("_at_header", "deflate")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._at_header = False
        #: The window bits of the compressed frames this client takes (permessage-deflate
        #: negotiated), None when it takes plain frames only.
        self.deflate: int | None = None

    def _parse_extensions_header(self, headers: HTTPHeaders) -> list[tuple[str, dict[str, str]]]:
        """The client's offers, narrowed to the first permessage-deflate offer we accept, with
        ``server_no_context_takeover`` added; Tornado then answers with it (and only it).

        Without context takeover every compressed message stands alone, which is what lets one
        compressed frame serve a whole group (:mod:`.frames`); it also keeps Tornado from
        holding a compressor (over 256 KiB) per connection. Offers we cannot honour are
        declined, not failed: unknown or repeated parameters (Tornado would refuse the
        handshake on the former), a value where none belongs, a window size that is not one of
        ``8``..``15`` as written, and a ``server_max_window_bits`` under 9 (zlib's smallest raw
        window). ``tests/security/test_hostile_deflate.py`` pins the answer to each."""
        if self.params.compression_options is None:
            return []
        for name, params in _extension_offers(headers.get("Sec-WebSocket-Extensions", "")):
            offer = dict(params)
            # A parameter named twice: declined (RFC 7692 section 7).
            bits = _acceptable_deflate(name, offer) if len(offer) == len(params) else None
            if bits is not None:
                self.deflate = bits
                agreed = {**offer, "server_no_context_takeover": None}
                return [(name, agreed)]  # type: ignore[list-item]  # None: a bare parameter
        return []

    async def _receive_frame(self) -> None:
        self._at_header = True
        await super()._receive_frame()

    async def _read_bytes(self, n: int) -> bytes:
        data = await super()._read_bytes(n)
        if self._at_header:
            self._at_header = False
            if not data[1] & 0x80:
                self._refuse(UNMASKED)
            # RSV1 marks a compressed message: on its first frame only, and only if negotiated.
            allowed = _RSV1 if self.deflate is not None and data[0] & 0x0F in (1, 2) else 0
            if data[0] & _RSV & ~allowed:
                self._refuse(RESERVED_BITS)
        return data

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if opcode == 0x8 and not self.client_terminated and not _valid_close_payload(data):
            self.client_terminated = True
            self.close_code = PROTOCOL_ERROR.code
            self.close(PROTOCOL_ERROR.code, PROTOCOL_ERROR.reason)
            return None
        try:
            return super()._handle_message(opcode, data)
        except zlib.error:  # only inflating raises here: on_message runs under Tornado's guard
            self._refuse(BAD_DEFLATE)

    def _refuse(self, why: Disconnect) -> NoReturn:
        """Close with ``why`` and end Tornado's frame loop, which then drops the stream."""
        self.close_code = why.code
        self.close(why.code, why.reason)
        raise StreamClosedError()


_DEFLATE_PARAMETERS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


def _extension_offers(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """``Sec-WebSocket-Extensions`` as (name, parameters) offers, in order, each parameter as
    (name, value) as written (repeats kept, so they can be declined); a parameter without a
    value has None (Tornado's own parser drops those, which loses
    ``client_no_context_takeover``), a quoted-string value is unquoted."""
    offers: list[tuple[str, list[tuple[str, str | None]]]] = []
    for element in header.split(","):
        name, *params = (part.strip() for part in element.split(";"))
        if not name:
            continue
        offer: list[tuple[str, str | None]] = []
        for param in params:
            key, sep, value = param.partition("=")
            offer.append((key.strip(), _unquote(value.strip()) if sep else None))
        offers.append((name, offer))
    return offers


def _unquote(value: str) -> str:
    """A quoted-string's content; anything else as it is (an unbalanced quote stays and makes
    the value invalid)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _acceptable_deflate(name: str, offer: dict[str, str | None]) -> int | None:
    """The server window bits to compress with under a permessage-deflate offer, or None when
    it is another extension or an offer we decline (RFC 7692 section 7.1)."""
    if name != "permessage-deflate" or not offer.keys() <= _DEFLATE_PARAMETERS:
        return None
    if any(offer.get(f"{side}_no_context_takeover") is not None for side in ("server", "client")):
        return None  # these take no value, not even an empty one
    if not _window_bits_ok(offer.get("client_max_window_bits"), optional=True):
        return None
    server_bits = offer.get("server_max_window_bits")
    if server_bits is None:
        return None if "server_max_window_bits" in offer else 15
    return int(server_bits) if _window_bits_ok(server_bits) and server_bits != "8" else None


#: Window sizes as RFC 7692 section 7.1.2 writes them: decimal, no leading zero, 8 to 15.
#: Compared as strings, never through ``int()``: that takes other scripts' digits ("\u00b2"
#: passes ``str.isdigit`` and fails ``int``) and refuses over 4300 digits with a ValueError.
_WINDOW_BITS = frozenset(str(bits) for bits in range(8, 16))


def _window_bits_ok(value: str | None, optional: bool = False) -> bool:
    """An offered window size: 8 to 15 (or absent, where the parameter may have no value)."""
    if value is None:
        return optional
    return value in _WINDOW_BITS


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
