"""The client frame reader (RFC 6455 section 5, RFC 7692 section 6), fed bytes by hand.

No socket: frames are built here, masked as a client masks them, and fed to a
:class:`FrameReader` in whatever pieces a test needs.
"""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from netsentinel_websocket.disconnect import (
    BAD_DEFLATE,
    PROTOCOL_ERROR,
    RESERVED_BITS,
    TOO_BIG,
    TOO_BIG_INFLATED,
    UNMASKED,
)
from netsentinel_websocket.wsreader import (
    Closing,
    FrameReader,
    Ping,
    Pong,
    Refuse,
    unmask,
    valid_close_code,
)

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
MASK = b"\x37\xfa\x21\x3d"
MAX = 1 << 20


def xor(mask: bytes, data: bytes) -> bytes:
    """``data`` masked byte by byte, the reference for :func:`unmask`."""
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


def frame(
    payload: bytes = b"",
    opcode: int = TEXT,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    mask: bytes = MASK,
    length: int | None = None,
    width: int | None = None,
) -> bytes:
    """A client frame: ``length`` overrides the announced size (the payload is sent as
    given), ``width`` forces the 7, 16 or 64-bit length encoding."""
    size = len(payload) if length is None else length
    if width is None:
        width = 7 if size < 126 else 16 if size < 1 << 16 else 64
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if masked else 0
    if width == 7:
        head += bytes([bit | size])
    elif width == 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    return head + mask + xor(mask, payload) if masked else head + payload


def close(code: int, reason: bytes = b"") -> bytes:
    """A close frame with ``code`` and ``reason``."""
    return frame(struct.pack("!H", code) + reason, CLOSE)


def drain(reader: FrameReader) -> list[object]:
    """Every event the reader can give now."""
    events = []
    while (event := reader.next()) is not None:
        events.append(event)
    return events


def read(*chunks: bytes, max_message: int = MAX, **deflate: object) -> list[object]:
    """Every event of a fresh reader fed ``chunks``, draining after each."""
    reader = FrameReader(max_message, **deflate)  # type: ignore[arg-type]
    events = []
    for chunk in chunks:
        reader.feed(chunk)
        events += drain(reader)
    return events


def compress(*messages: bytes, bits: int = 15) -> list[bytes]:
    """Each message as RFC 7692 sends it: raw deflate from one compressor (so later messages
    may refer to earlier ones), sync-flushed, the 00 00 ff ff tail removed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -bits)
    out = []
    for message in messages:
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


def deflated(payload: bytes, opcode: int = TEXT, bits: int = 15) -> bytes:
    """One compressed, unfragmented message."""
    return frame(compress(payload, bits=bits)[0], opcode, rsv=RSV1)


# --- messages -------------------------------------------------------------------------------


def test_text_message_is_str():
    [event] = read(frame("héllo ☃".encode()))
    assert event == "héllo ☃"
    assert type(event) is str


def test_binary_message_is_bytes():
    [event] = read(frame(b"\x00\xff\x80", BINARY))
    assert event == b"\x00\xff\x80"
    assert type(event) is bytes


def test_empty_messages():
    assert read(frame(b""), frame(b"", BINARY)) == ["", b""]


def test_nothing_fed_gives_nothing():
    reader = FrameReader(MAX)
    assert reader.next() is None
    reader.feed(b"")
    assert reader.next() is None


@pytest.mark.parametrize("width", [7, 16, 64])
def test_split_byte_by_byte_is_none_until_complete(width):
    """Every partial header and payload waits; the last byte gives the message."""
    data = frame(b"split me", width=width)
    reader = FrameReader(MAX)
    for byte in data[:-1]:
        reader.feed(bytes([byte]))
        assert reader.next() is None
    reader.feed(data[-1:])
    assert reader.next() == "split me"
    assert reader.next() is None


def test_every_split_point_of_two_frames():
    """Whatever the socket cuts, the messages come out whole and in order (the consumed
    part of the buffer is dropped at the next feed, never anything else)."""
    data = frame(b"first") + frame(b"second message", BINARY) + frame(b"x" * 200)
    for cut in range(len(data) + 1):
        assert read(data[:cut], data[cut:]) == ["first", b"second message", "x" * 200], cut


def test_three_pieces_with_drains_in_between():
    data = frame(b"a" * 300) + frame(b"b") + frame(b"c" * 70000, BINARY)
    pieces = [data[:5], data[5:310], data[310:320], data[320:]]
    assert read(*pieces) == ["a" * 300, "b", b"c" * 70000]


def test_several_frames_in_one_feed_one_per_next():
    reader = FrameReader(MAX)
    reader.feed(frame(b"one") + frame(b"two", BINARY) + frame(b"p", PING) + frame(b"three"))
    assert reader.next() == "one"
    assert reader.next() == b"two"
    assert reader.next() == Ping(b"p")
    assert reader.next() == "three"
    assert reader.next() is None
    reader.feed(frame(b"four"))
    assert reader.next() == "four"


def test_feed_keeps_the_unread_frames():
    """Feeding before the earlier frames are taken keeps them (the endpoint may feed while
    a message is being handled)."""
    reader = FrameReader(MAX)
    reader.feed(frame(b"one") + frame(b"two"))
    assert reader.next() == "one"
    reader.feed(frame(b"three"))
    assert reader.next() == "two"
    reader.feed(frame(b"four")[:3])
    assert reader.next() == "three"
    assert reader.next() is None
    reader.feed(frame(b"four")[3:])
    assert reader.next() == "four"


@pytest.mark.parametrize(
    ("size", "header"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)]
)
def test_length_encodings(size, header):
    """7, 16 and 64-bit lengths at their boundaries; the header is fed a byte at a time."""
    payload = bytes(i % 251 for i in range(size))
    data = frame(payload, BINARY)
    assert len(data) == header + 4 + size
    reader = FrameReader(MAX)
    for byte in data[: header + 4]:
        assert reader.next() is None
        reader.feed(bytes([byte]))
    if size:
        assert reader.next() is None
        reader.feed(data[header + 4 :])
    assert drain(reader) == [payload]


@pytest.mark.parametrize("width", [16, 64])
def test_longer_length_encoding_than_needed(width):
    """A small payload with a 16 or 64-bit length is read by its length (as Tornado did)."""
    assert read(frame(b"small", width=width)) == ["small"]


def test_large_message():
    payload = bytes(range(256)) * 4096  # 1 MiB
    assert read(frame(payload, BINARY), max_message=len(payload)) == [payload]


def test_mask_is_applied():
    """The payload is unmasked with the frame's own key."""
    for mask in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x03\x04"):
        assert read(frame(b"masked text", mask=mask)) == ["masked text"]


# --- fragmentation ---------------------------------------------------------------------------


def test_fragmented_text():
    reader = FrameReader(MAX)
    for part in (frame(b"ab", fin=False), frame(b"cd", CONT, fin=False)):
        reader.feed(part)
        assert reader.next() is None
    reader.feed(frame(b"ef", CONT))
    assert reader.next() == "abcdef"
    assert reader.next() is None


def test_fragmented_binary_in_one_feed_is_one_next():
    reader = FrameReader(MAX)
    reader.feed(
        frame(b"\x00", BINARY, fin=False) + frame(b"", CONT, fin=False) + frame(b"\xff", CONT)
    )
    assert reader.next() == b"\x00\xff"
    assert reader.next() is None


def test_utf8_character_across_fragments():
    """Text is decoded as a whole message, not per fragment."""
    snowman = "☃".encode()
    assert read(frame(snowman[:1], fin=False), frame(snowman[1:], CONT)) == ["☃"]


def test_control_frames_between_fragments_come_first():
    data = (
        frame(b"frag", fin=False)
        + frame(b"ping", PING)
        + frame(b"ment", CONT, fin=False)
        + frame(b"pong", PONG)
        + frame(b"ed", CONT)
    )
    assert read(data) == [Ping(b"ping"), Pong(b"pong"), "fragmented"]
    for cut in range(len(data)):
        assert read(data[:cut], data[cut:]) == [Ping(b"ping"), Pong(b"pong"), "fragmented"]


def test_a_message_after_a_fragmented_one():
    assert read(frame(b"a", fin=False), frame(b"b", CONT), frame(b"c", BINARY)) == ["ab", b"c"]
    assert read(
        frame(b"a", BINARY, fin=False), frame(b"b", CONT), frame(b"c", fin=False), frame(b"d", CONT)
    ) == [b"ab", "cd"]


def test_close_between_fragments_ends_the_message():
    assert read(frame(b"a", fin=False), close(1000), frame(b"b", CONT)) == [Closing(1000, "")]


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE, CONT])
def test_unmasked_frame(opcode):
    """Decided from the first two bytes, before the rest arrives."""
    data = frame(b"hello", opcode, masked=False)
    assert read(data[:2]) == [Refuse(UNMASKED)]
    assert read(data) == [Refuse(UNMASKED)]


def test_unmasked_frame_under_deflate():
    assert read(frame(b"x", masked=False, rsv=RSV1), inflate_bits=15) == [Refuse(UNMASKED)]


@pytest.mark.parametrize(
    ("rsv", "opcode", "inflate_bits"),
    [
        (RSV1, TEXT, None),  # RSV1 without permessage-deflate
        (RSV1, BINARY, None),
        (RSV2, TEXT, None),
        (RSV3, TEXT, None),
        (RSV2, TEXT, 15),  # deflate allows RSV1 only
        (RSV3, BINARY, 15),
        (RSV1 | RSV2, TEXT, 15),
        (RSV1 | RSV3, TEXT, 15),
        (RSV1, PING, 15),  # never on a control frame
        (RSV1, PONG, 15),
        (RSV1, CLOSE, 15),
        (RSV2, PING, None),
        (RSV1, 0x3, 15),  # nor on a reserved data opcode
    ],
)
def test_reserved_bits(rsv, opcode, inflate_bits):
    data = frame(b"x", opcode, rsv=rsv)
    assert read(data[:2], inflate_bits=inflate_bits) == [Refuse(RESERVED_BITS)]


def test_rsv1_on_a_continuation_under_deflate():
    """RSV1 marks the first frame of a compressed message only (RFC 7692 6.1)."""
    first, rest = frame(b"ab", fin=False), frame(b"cd", CONT, rsv=RSV1)
    assert read(first, rest, inflate_bits=15) == [Refuse(RESERVED_BITS)]
    [compressed] = compress(b"abcd")
    first = frame(compressed[:2], fin=False, rsv=RSV1)
    rest = frame(compressed[2:], CONT, rsv=RSV1)
    assert read(first, rest, inflate_bits=15) == [Refuse(RESERVED_BITS)]


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE, 0xB])
@pytest.mark.parametrize("size", [126, 127, 65536])
def test_control_frame_over_125_bytes(opcode, size):
    """Dropped from the first two bytes: its extended length is not even read."""
    data = frame(b"x" * size, opcode)
    assert read(data[:2]) == [Refuse(None)]


@pytest.mark.parametrize("opcode", [PING, PONG])
def test_control_frame_of_125_bytes(opcode):
    event = Ping if opcode == PING else Pong
    assert read(frame(b"p" * 125, opcode)) == [event(b"p" * 125)]


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame(opcode):
    assert read(frame(b"", opcode, fin=False)) == [Refuse(None)]
    assert read(frame(b"a", fin=False), frame(b"p", opcode, fin=False)) == [Refuse(None)]


def test_continuation_of_nothing():
    assert read(frame(b"x", CONT)) == [Refuse(None)]
    assert read(frame(b"x", CONT, fin=False)) == [Refuse(None)]
    assert read(frame(b"a"), frame(b"x", CONT)) == ["a", Refuse(None)]
    assert read(frame(b"a", fin=False), frame(b"b", CONT), frame(b"c", CONT)) == [
        "ab",
        Refuse(None),
    ]


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
@pytest.mark.parametrize("fin", [True, False])
def test_new_message_inside_a_fragmented_one(opcode, fin):
    assert read(frame(b"a", fin=False), frame(b"b", opcode, fin=fin)) == [Refuse(None)]


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(opcode):
    assert read(frame(b"x", opcode)) == [Refuse(None)]
    assert read(frame(b"", opcode)) == [Refuse(None)]


@pytest.mark.parametrize("opcode", [0x3, 0x7])
def test_reserved_data_opcode_fragmented(opcode):
    """A fragmented message of a reserved opcode is never given out."""
    assert read(frame(b"x", opcode, fin=False), frame(b"y", CONT)) == [Refuse(None)]


@pytest.mark.parametrize("opcode", [0x3, 0xB])
def test_reserved_opcode_after_a_message(opcode):
    assert read(frame(b"ok"), frame(b"x", opcode)) == ["ok", Refuse(None)]


@pytest.mark.parametrize("opcode", [0x3, 0x7])
def test_reserved_data_opcode_after_a_compressed_message_is_dropped(opcode):
    events = read(deflated(b"hello"), frame(b"\xff\xff\xff", opcode), inflate_bits=15)
    assert events == ["hello", Refuse(None)]


def test_invalid_utf8_text():
    assert read(frame(b"\xff\xfe")) == [Refuse(None)]
    assert read(frame(b"ok \xc3")) == [Refuse(None)]  # cut inside a character
    assert read(frame(b"\xed\xa0\x80")) == [Refuse(None)]  # a surrogate
    assert read(frame(b"a\xc3", fin=False), frame(b"(", CONT)) == [Refuse(None)]


def test_invalid_utf8_binary_is_fine():
    assert read(frame(b"\xff\xfe", BINARY)) == [b"\xff\xfe"]


# --- sizes -----------------------------------------------------------------------------------


def test_exactly_max_message_is_allowed():
    assert read(frame(b"x" * 100), max_message=100) == ["x" * 100]
    assert read(frame(b"x" * 1000, BINARY), max_message=1000) == [b"x" * 1000]


@pytest.mark.parametrize(("size", "fed"), [(101, 2), (1001, 4), (1 << 16, 10)])
def test_over_max_message_refused_from_the_header(size, fed):
    """Refused once the length is known: none of the payload is waited for."""
    data = frame(b"x" * size, BINARY)
    assert read(data[:fed], max_message=size - 1) == [Refuse(TOO_BIG)]


def test_8_eib_header_without_payload():
    header = frame(b"", BINARY, length=1 << 63)
    assert len(header) == 14
    assert read(header[:10], max_message=MAX) == [Refuse(TOO_BIG)]
    assert read(frame(b"", length=(1 << 64) - 1)[:10]) == [Refuse(TOO_BIG)]


def test_fragments_summing_to_max_allowed():
    parts = frame(b"a" * 40, fin=False), frame(b"b" * 40, CONT, fin=False), frame(b"c" * 20, CONT)
    assert read(*parts, max_message=100) == ["a" * 40 + "b" * 40 + "c" * 20]


def test_fragments_summing_over_max():
    """The fragment that would pass the limit is refused from its header alone."""
    first, second = frame(b"a" * 60, fin=False), frame(b"b" * 41, CONT)
    assert read(first, second[:2], max_message=100) == [Refuse(TOO_BIG)]
    second = frame(b"b" * 40, CONT, fin=False)
    assert read(first, second, frame(b"c", CONT), max_message=100) == [Refuse(TOO_BIG)]


def test_ping_between_fragments_is_not_part_of_the_message_size():
    events = read(
        frame(b"a" * 90, fin=False), frame(b"p" * 20, PING), frame(b"b", CONT), max_message=100
    )
    assert events == [Ping(b"p" * 20), "a" * 90 + "b"]


def test_fragment_size_counts_from_the_message_start():
    """Each message starts from zero: an earlier message does not count."""
    assert read(
        frame(b"a" * 60, fin=False),
        frame(b"b" * 40, CONT),
        frame(b"c" * 60, fin=False),
        frame(b"d" * 40, CONT),
        max_message=100,
    ) == ["a" * 60 + "b" * 40, "c" * 60 + "d" * 40]


# --- close frames ----------------------------------------------------------------------------


def test_empty_close():
    assert read(frame(b"", CLOSE)) == [Closing(None, "")]


def test_close_with_code_and_reason():
    assert read(close(1000, "bye ☃".encode())) == [Closing(1000, "bye ☃")]
    assert read(close(4001)) == [Closing(4001, "")]


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999])
def test_valid_close_codes(code):
    assert read(close(code, b"r")) == [Closing(code, "r")]
    assert valid_close_code(code)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_codes(code):
    assert read(close(code)) == [Refuse(PROTOCOL_ERROR)]
    assert not valid_close_code(code)


def test_one_byte_close_payload():
    assert read(frame(b"\x03", CLOSE)) == [Refuse(PROTOCOL_ERROR)]


def test_close_reason_not_utf8():
    assert read(close(1000, b"\xff")) == [Refuse(PROTOCOL_ERROR)]
    assert read(close(1000, b"ok \xc3")) == [Refuse(PROTOCOL_ERROR)]


def test_close_reason_of_123_bytes():
    assert read(close(1000, b"r" * 123)) == [Closing(1000, "r" * 123)]


# --- nothing after the end -------------------------------------------------------------------


@pytest.mark.parametrize(
    "last",
    [
        close(1000),
        frame(b"", CLOSE),
        close(999),
        frame(b"x", masked=False),
        frame(b"x", CONT),
        frame(b"x" * 200, BINARY),  # over max_message below
    ],
)
def test_nothing_is_read_after_closing_or_refusing(last):
    reader = FrameReader(100)
    reader.feed(frame(b"before") + last + frame(b"after in the same feed"))
    assert reader.next() == "before"
    assert isinstance(reader.next(), (Closing, Refuse))
    assert reader.next() is None
    reader.feed(frame(b"after") + frame(b"p", PING))
    assert reader.next() is None
    reader.feed(frame(b"more"))
    assert reader.next() is None


def test_nothing_is_read_after_a_refusal_mid_message():
    reader = FrameReader(MAX)
    reader.feed(frame(b"a", fin=False) + frame(b"b", TEXT) + frame(b"c", CONT))
    assert reader.next() == Refuse(None)
    reader.feed(frame(b"d", CONT))
    assert reader.next() is None


# --- control events --------------------------------------------------------------------------


def test_ping_and_pong():
    assert read(frame(b"", PING), frame(b"hb", PONG), frame(b"\xff", PING)) == [
        Ping(b""),
        Pong(b"hb"),
        Ping(b"\xff"),
    ]
    [ping] = read(frame(b"x", PING))
    assert type(ping.data) is bytes


# --- permessage-deflate ----------------------------------------------------------------------


@pytest.mark.parametrize("takeover", [True, False])
def test_compressed_message_inflates(takeover):
    text = "compressed ☃ " * 50
    assert read(deflated(text.encode()), inflate_bits=15, inflate_takeover=takeover) == [text]
    assert read(deflated(b"\x00\x01" * 300, BINARY), inflate_bits=15) == [b"\x00\x01" * 300]


def test_compressed_empty_message():
    assert read(deflated(b""), inflate_bits=15) == [""]


def test_uncompressed_messages_under_deflate():
    """RSV1 is per message: plain and compressed messages may alternate."""
    events = read(
        frame(b"plain"),
        deflated(b"packed"),
        frame(b"\x00plain", BINARY),
        deflated(b"\x00packed", BINARY),
        frame(b"plain again"),
        inflate_bits=15,
    )
    assert events == ["plain", "packed", b"\x00plain", b"\x00packed", "plain again"]


def test_a_plain_message_is_not_inflated():
    """Bytes that would not inflate are taken as they are without RSV1."""
    assert read(frame(b"\xff\xff"), inflate_bits=15) == [Refuse(None)]  # not UTF-8
    assert read(frame(b"\xff\xff", BINARY), inflate_bits=15) == [b"\xff\xff"]


def test_takeover_refers_to_the_previous_message():
    text = b"the same sentence, repeated in the next message. " * 3
    first, second = compress(text, text)
    assert len(second) < len(first) // 2  # the second is mostly a reference to the first
    events = read(
        frame(first, rsv=RSV1), frame(second, rsv=RSV1), inflate_bits=15, inflate_takeover=True
    )
    assert events == [text.decode()] * 2


def test_takeover_context_survives_plain_messages_and_pings():
    """One inflater for the connection, made at the first compressed message."""
    text = b"a context worth keeping across messages " * 4
    first, second = compress(text, text)
    events = read(
        frame(b"plain before"),
        frame(first, rsv=RSV1),
        frame(b"plain between"),
        frame(b"p", PING),
        frame(second, rsv=RSV1),
        inflate_bits=15,
        inflate_takeover=True,
    )
    assert events == ["plain before", text.decode(), "plain between", Ping(b"p"), text.decode()]


def test_without_takeover_each_message_stands_alone():
    """A fresh inflater per message: a reference to the previous one does not inflate,
    independent messages all do."""
    text = b"the same sentence, repeated in the next message. " * 3
    first, second = compress(text, text)
    events = read(frame(first, rsv=RSV1), frame(second, rsv=RSV1), inflate_bits=15)
    assert events == [text.decode(), Refuse(BAD_DEFLATE)]
    alone = [frame(compress(text)[0], rsv=RSV1) for _ in range(3)]
    assert read(*alone, inflate_bits=15) == [text.decode()] * 3


def finished(payload: bytes) -> bytes:
    """``payload`` ending in a final block (``Z_FINISH``), which RFC 7692 7.2.3.3 allows."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(payload) + compressor.flush(zlib.Z_FINISH)


@pytest.mark.parametrize("takeover", [True, False])
def test_a_message_ending_in_a_final_block_leaves_the_next_its_own_context(takeover):
    events = read(
        frame(finished(b"first"), rsv=RSV1),
        frame(compress(b"second")[0], rsv=RSV1),
        frame(finished(b"third"), rsv=RSV1),
        inflate_bits=15,
        inflate_takeover=takeover,
    )
    assert events == ["first", "second", "third"]


def test_bytes_after_a_final_block_do_not_inflate():
    garbage = frame(finished(b"first") + b"tail", rsv=RSV1)
    assert read(garbage, inflate_bits=15, inflate_takeover=True) == [Refuse(BAD_DEFLATE)]


def test_takeover_with_independent_messages():
    text = b"independent " * 10
    alone = [frame(compress(text)[0], rsv=RSV1) for _ in range(3)]
    assert read(*alone, inflate_bits=15, inflate_takeover=True) == [text.decode()] * 3


def test_inflate_uses_the_negotiated_window():
    """The inflater keeps the agreed window between messages: a reference from the next
    message further back than it does not inflate."""
    earlier = random.Random(7).randbytes(600)  # no repeats: the 64 bytes are 600 back
    first, second = (frame(data, BINARY, rsv=RSV1) for data in compress(earlier, earlier[:64]))
    kwargs = {"inflate_takeover": True}
    assert read(first, second, inflate_bits=15, **kwargs) == [earlier, earlier[:64]]
    assert read(first, second, inflate_bits=9, **kwargs) == [earlier, Refuse(BAD_DEFLATE)]
    near = [frame(data, BINARY, rsv=RSV1) for data in compress(earlier, earlier[-64:], bits=9)]
    assert read(*near, inflate_bits=9, **kwargs) == [earlier, earlier[-64:]]


@pytest.mark.parametrize("takeover", [True, False])
def test_compressed_fragmented_message_with_a_ping_between(takeover):
    text = "fragmented and compressed " * 20
    [compressed] = compress(text.encode())
    third = len(compressed) // 3
    data = (
        frame(compressed[:third], fin=False, rsv=RSV1)
        + frame(b"between", PING)
        + frame(compressed[third : 2 * third], CONT, fin=False)
        + frame(b"", PONG)
        + frame(compressed[2 * third :], CONT)
    )
    kwargs = {"inflate_bits": 15, "inflate_takeover": takeover}
    assert read(data, **kwargs) == [Ping(b"between"), Pong(b""), text]
    for cut in range(0, len(data), 7):
        assert read(data[:cut], data[cut:], **kwargs) == [Ping(b"between"), Pong(b""), text]


def test_plain_fragmented_message_under_deflate():
    events = read(frame(b"ab", fin=False), frame(b"p", PING), frame(b"cd", CONT), inflate_bits=15)
    assert events == [Ping(b"p"), "abcd"]


def test_compressed_message_after_a_plain_fragmented_one_and_back():
    text = b"squeezed " * 10
    events = read(
        frame(b"pl", fin=False),
        frame(b"ain", CONT),
        frame(compress(text)[0], BINARY, rsv=RSV1),
        frame(b"again", fin=False),
        frame(b"", CONT),
        inflate_bits=15,
    )
    assert events == ["plain", text, "again"]


def test_deflate_bomb():
    bomb = deflated(b"\x00" * 101, BINARY)
    assert len(bomb) < 100
    assert read(bomb, max_message=100, inflate_bits=15) == [Refuse(TOO_BIG_INFLATED)]
    big = deflated(b"\x00" * (10 * MAX), BINARY)
    assert read(big, inflate_bits=15, inflate_takeover=True) == [Refuse(TOO_BIG_INFLATED)]


def test_inflating_to_exactly_max_message():
    for size in (100, 5000, 70000):
        exact = deflated(b"z" * size, BINARY)
        assert read(exact, max_message=size, inflate_bits=15) == [b"z" * size]


def test_compressed_frame_over_max_refused_from_the_header():
    data = frame(b"x" * 200, BINARY, rsv=RSV1)
    assert read(data[:4], max_message=100, inflate_bits=15) == [Refuse(TOO_BIG)]
    data = frame(b"x" * 100, BINARY, rsv=RSV1)
    assert read(data[:2], max_message=99, inflate_bits=15) == [Refuse(TOO_BIG)]


@pytest.mark.parametrize(
    "garbage", [b"\xff\xff\xff", b"\x07", b"\xfa" * 20, compress(b"hello " * 9)[0][:-2] + b"\xff"]
)
def test_garbage_compressed_data(garbage):
    assert read(frame(garbage, rsv=RSV1), inflate_bits=15) == [Refuse(BAD_DEFLATE)]


def test_compressed_text_not_utf8():
    assert read(deflated(b"\xff\xfe"), inflate_bits=15) == [Refuse(None)]
    assert read(deflated(b"\xff\xfe", BINARY), inflate_bits=15) == [b"\xff\xfe"]


def test_nothing_is_read_after_bad_deflate():
    reader = FrameReader(MAX, 15, True)
    reader.feed(frame(b"\xff\xff\xff", rsv=RSV1) + deflated(b"after"))
    assert reader.next() == Refuse(BAD_DEFLATE)
    assert reader.next() is None
    reader.feed(deflated(b"later"))
    assert reader.next() is None


# --- unmask and close codes ------------------------------------------------------------------


@pytest.mark.parametrize("size", [*range(10), 1 << 17])
@pytest.mark.parametrize("mask", [MASK, b"\x00\x00\x00\x00", b"\xff\x00\x80\x01"])
def test_unmask_matches_byte_by_byte_xor(size, mask):
    data = bytes((i * 37 + 11) % 256 for i in range(size))
    assert unmask(mask, data) == xor(mask, data)
    assert type(unmask(mask, data)) is bytes
    assert unmask(mask, unmask(mask, data)) == data


def test_unmask_keeps_leading_and_trailing_zeros():
    """Integers drop no byte at either end: the length is the data's."""
    assert unmask(b"\x00\x00\x00\x00", b"\x00" * 7) == b"\x00" * 7
    assert unmask(b"\x01\x00\x00\x00", b"\x01\x00\x00\x00\x01") == b"\x00" * 5


def test_valid_close_code_ranges():
    valid = {code for code in range(70000) if valid_close_code(code)}
    assert valid == {*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)}


def test_a_text_frame_inside_a_fragmented_message_counts_what_came_before():
    """Refused from its header: the fragments so far plus its length pass the limit."""
    second = frame(b"ghijkl")
    assert read(frame(b"abcdef", fin=False), second[:6], max_message=10) == [Refuse(TOO_BIG)]


def test_a_message_ending_in_an_empty_stored_block_inflates():
    """The tail put back completes the block: nothing is left over, nothing is refused."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(b"hello") + compressor.flush(zlib.Z_SYNC_FLUSH) + b"\x01"
    assert read(frame(payload, rsv=RSV1), inflate_bits=15) == ["hello"]


def test_nothing_is_held_once_every_frame_is_taken():
    """A connection that sent a large message and went quiet keeps no buffer of it."""
    reader = FrameReader(MAX)
    reader.feed(frame(b"x" * 60_000) + frame(b"y" * 10)[:3])
    assert reader.next() == "x" * 60_000
    assert reader.next() is None  # the endpoint asks until then, and reads
    assert len(reader._buffer) == 3  # the start of the next frame only
    reader.feed(frame(b"y" * 10)[3:])
    assert reader.next() == "y" * 10
    assert len(reader._buffer) == 0


def test_bytes_after_the_end_are_dropped():
    reader = FrameReader(MAX)
    reader.feed(frame(b"", CLOSE))
    assert reader.next() == Closing(None, "")
    reader.feed(frame(b"x" * 1000) * 50)
    assert reader.next() is None
    assert len(reader._buffer) == 0


def test_bytes_may_be_fed_before_none_is_returned():
    """Feeding is allowed at any time, not only once ``next`` has asked for more."""
    reader = FrameReader(MAX)
    reader.feed(frame(b"first"))
    assert reader.next() == "first"  # all taken, and the buffer with it
    reader.feed(frame(b"second"))
    assert reader.next() == "second"
    assert reader.next() is None


def test_a_client_that_asked_for_8_bit_windows_inflates():
    """zlib compresses with no less than 9 bits when asked for 8 (a browser's or a script's
    zlib); the reader's inflater for 8 bits takes what it produces."""
    text = bytes(random.Random(8).choices(b"abcdefghijklmnop", k=240)) * 3
    compressor = zlib.compressobj(9, zlib.DEFLATED, -9)
    data = (compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    once = zlib.compressobj(9, zlib.DEFLATED, -9)
    alone = once.compress(text[:240]) + once.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < len(alone) + 50  # the two repeats are references 240 bytes back
    assert read(frame(data, rsv=RSV1), inflate_bits=8) == [text.decode()]
