"""permessage-deflate (RFC 7692) from a hostile client, against a real ``serve``.

The offer parser (``wsprotocol.negotiate_deflate``) reads a header the attacker wrote: every
offer below gets either a 101 whose ``Sec-WebSocket-Extensions`` answer is exactly what
RFC 7692 allows for it (or no answer: declined, plain frames), or an HTTP refusal; then
frames a compressing client must not send (a deflate bomb, reserved bits it did not
negotiate, compressed control frames) get their close code. Each test runs under
:class:`~tests.security.attack.Guard`: a subscriber connected throughout misses no event and
the server's RSS stays bounded.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from netsentinel_websocket.httpserver import MAX_HEADER_BYTES

from ..conftest import close_code, make_token
from .attack import WITNESS_CHANNEL, Guard, attack_config

MIB = 1024  # KiB
BASIC = "permessage-deflate; server_no_context_takeover"

FIN, RSV1, RSV2, RSV3 = 0x80, 0x40, 0x20, 0x10
TEXT, CONTINUATION, CLOSE, PING = 0x1, 0x0, 0x8, 0x9


@dataclass
class Answer:
    """The server's answer to a handshake: its status and headers (lower-case names)."""

    status: int
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def extensions(self) -> str | None:
        return self.headers.get("sec-websocket-extensions")

    def close(self) -> None:
        self.writer.close()


async def handshake(port: int, extensions: list[bytes]) -> Answer:
    """An upgrade with a valid Bearer token and one ``Sec-WebSocket-Extensions`` line per
    item of ``extensions`` (raw bytes: non-ASCII and odd whitespace go out as they are)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    key = base64.b64encode(os.urandom(16))
    head = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
        b"Authorization: Bearer " + make_token().encode() + b"\r\n"
    )
    head += b"".join(b"Sec-WebSocket-Extensions: " + value + b"\r\n" for value in extensions)
    writer.write(head + b"\r\n")
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = raw.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, reader, writer)


def window_bits(answer: str) -> int:
    """The server's window under an agreed answer (15 unless limited)."""
    for part in answer.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "server_max_window_bits":
            return int(value)
    return 15


async def read_frame(reader: asyncio.StreamReader, timeout: float = 5) -> tuple[int, bytes]:
    """The next server frame as (first byte, payload)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), timeout)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return first, await asyncio.wait_for(reader.readexactly(n), timeout)


async def messages(answer: Answer) -> tuple[bool, list[dict[str, Any]]]:
    """The next text frame: whether it was compressed, and its messages (inflated with the
    server window the answer agreed)."""
    first, payload = await read_frame(answer.reader)
    assert first & 0x0F == TEXT, first
    if first & RSV1:
        assert answer.extensions, "a compressed frame without permessage-deflate"
        inflate = zlib.decompressobj(-window_bits(answer.extensions))
        payload = inflate.decompress(payload + b"\0\0\xff\xff")
    return bool(first & RSV1), [orjson.loads(line) for line in payload.split(b"\n")]


def client_frame(opcode: int, payload: bytes, first: int = FIN) -> bytes:
    """One masked client frame; ``first`` holds the FIN and RSV bits."""
    n = len(payload)
    if n < 126:
        length = bytes((0x80 | n,))
    elif n < 65536:
        length = struct.pack("!BH", 0x80 | 126, n)
    else:
        length = struct.pack("!BQ", 0x80 | 127, n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((first | opcode,)) + length + mask + masked


def deflated(payload: bytes, level: int = 6) -> bytes:
    """``payload`` as a permessage-deflate message body (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


async def negotiated(answer: Answer) -> bool:
    """Read the ``welcome``, subscribe to the busy ``witness`` channel and read up to its first
    event: True if the server compressed that event frame."""
    _, (hello,) = await messages(answer)
    assert hello["type"] == "welcome", hello
    request = {"type": "subscribe", "id": 1, "channels": [WITNESS_CHANNEL]}
    answer.writer.write(client_frame(TEXT, orjson.dumps(request)))
    while True:
        compressed, got = await messages(answer)
        if any(m["type"] == "event" for m in got):
            return compressed


# --- the offers: (what, Sec-WebSocket-Extensions lines, the exact answer: None declined, an
# int an HTTP status, "dropped" the connection closed without an answer) ---

WINDOW = "permessage-deflate; server_max_window_bits="
OFFERS: list[tuple[str, list[bytes], str | int | None]] = [
    ("plain offer", [b"permessage-deflate"], BASIC),
    ("the offer after 5000 unknown ones", [b"x," * 5000 + b"permessage-deflate"], BASIC),
    ("5000 empty elements", [b"," * 5000], None),
    (
        "the acceptable offer after 600 declined ones",
        [
            b"permessage-deflate; server_max_window_bits=8, " * 300
            + b"permessage-deflate; client_no_context_takeover"
        ],
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
    ),
    (
        "a header filling the head",
        [b"permessage-deflate; x=" + b"a" * (MAX_HEADER_BYTES - 1200)],
        None,
    ),
    (
        "a parameter name filling the head",
        [b"permessage-deflate; " + b"b" * (MAX_HEADER_BYTES - 1200)],
        None,
    ),
    (
        "over the head limit",
        [b"permessage-deflate, " + b"c" * MAX_HEADER_BYTES],
        "dropped",
    ),
    # a parameter named twice: RFC 7692 section 7 declines the offer
    (
        "server_max_window_bits twice",
        [b"permessage-deflate; server_max_window_bits=10; server_max_window_bits=12"],
        None,
    ),
    (
        "client_max_window_bits twice",
        [b"permessage-deflate; client_max_window_bits; client_max_window_bits=10"],
        None,
    ),
    (
        "server_no_context_takeover twice",
        [b"permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
        None,
    ),
    (
        "client_no_context_takeover twice",
        [b"permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
        None,
    ),
    # values where none belong
    (
        "server_no_context_takeover=yes",
        [b"permessage-deflate; server_no_context_takeover=yes"],
        None,
    ),
    ("server_no_context_takeover=", [b"permessage-deflate; server_no_context_takeover="], None),
    ('client_no_context_takeover=""', [b'permessage-deflate; client_no_context_takeover=""'], None),
    ("client_no_context_takeover=1", [b"permessage-deflate; client_no_context_takeover=1"], None),
    # window sizes
    *[
        (
            f"server_max_window_bits={v}",
            [WINDOW.encode() + v.encode()],
            f"{WINDOW}{v}; server_no_context_takeover",
        )
        for v in ("9", "12", "15")
    ],
    *[
        (f"server_max_window_bits={v!r}", [WINDOW.encode() + v.encode("latin-1")], None)
        for v in (
            "8",
            "7",
            "0",
            "-1",
            "-15",
            "16",
            "99",
            "010",
            "+10",
            "1e1",
            "10.0",
            "0x0f",
            "",
            "9" * 5000,
            "1" + "0" * 4400,
            "ten",
            "10;",
            "\xb2",
            "\xb9",
        )
    ],
    (
        "server_max_window_bits without a value",
        [b"permessage-deflate; server_max_window_bits"],
        None,
    ),
    (
        "client_max_window_bits without a value",
        [b"permessage-deflate; client_max_window_bits"],
        BASIC,
    ),
    *[
        (
            f"client_max_window_bits={v}",
            [b"permessage-deflate; client_max_window_bits=" + v.encode()],
            f"permessage-deflate; client_max_window_bits={v}; server_no_context_takeover",
        )
        for v in ("8", "11", "15")
    ],
    *[
        (
            f"client_max_window_bits={v!r}",
            [b"permessage-deflate; client_max_window_bits=" + v.encode("latin-1")],
            None,
        )
        for v in ("7", "16", "-8", "", "08", "9" * 5000, "\xb3", "a")
    ],
    # quoted strings (RFC 7692 7.1: a value may be a quoted-string of the same token)
    ('quoted "10"', [WINDOW.encode() + b'"10"'], f"{WINDOW}10; server_no_context_takeover"),
    ("unbalanced quote before", [WINDOW.encode() + b'"10'], None),
    ("unbalanced quote after", [WINDOW.encode() + b'10"'], None),
    ("doubled quotes", [WINDOW.encode() + b'""10""'], None),
    ("a quoted comma splits the header", [b'permessage-deflate; x="a,permessage-deflate"'], None),
    ("a quoted name", [b'"permessage-deflate"'], None),
    # whitespace
    (
        "tabs and spaces around everything",
        [b" \t permessage-deflate \t;\t client_max_window_bits \t=\t 10 \t"],
        "permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
    ),
    ("a space inside the name", [b"permessage -deflate"], None),
    ("trailing semicolons", [b"permessage-deflate;;;"], None),
    ("upper-case name", [b"PERMESSAGE-DEFLATE"], None),
    # unknown extensions and parameters
    ("unknown extensions only", [b"x-webkit-deflate-frame, foo; bar=1, baz"], None),
    ("unknown parameter", [b"permessage-deflate; mystery=1"], None),
    (
        "unknown extension before the offer",
        [
            b"x-webkit-deflate-frame; no_context_takeover, "
            b"permessage-deflate; client_max_window_bits"
        ],
        BASIC,
    ),
    (
        "two header lines",
        [b"x-foo", b"permessage-deflate; server_max_window_bits=11"],
        f"{WINDOW}11; server_no_context_takeover",
    ),
    # bytes that are not ASCII
    ("a latin-1 name", [b"permessage-d\xe9flate"], None),
    ("UTF-8 in a parameter", [b"permessage-deflate; caf\xc3\xa9=1"], None),
    ("UTF-8 digits", [WINDOW.encode() + "\uff11\uff10".encode()], None),
    ("0xff bytes", [b"\xff" * 2000], None),
    ("a raw NUL", [b"permessage-deflate\x00; server_max_window_bits=10"], 400),
]


@pytest.mark.gen_test(timeout=120)
async def test_every_extension_offer_gets_an_answer_rfc_7692_allows(serve_process):
    proc = serve_process(attack_config())
    got: dict[str, str | int | None] = {}
    async with Guard(proc, rss_bound_kib=10 * MIB):
        for what, lines, _ in OFFERS:
            try:
                answer = await handshake(proc.port, lines)
            except (asyncio.IncompleteReadError, ConnectionError):
                got[what] = "dropped"
                continue
            if answer.status == 101:
                compressed = await negotiated(answer)  # the server does what it answered
                agreed = answer.extensions
                got[what] = agreed if compressed == bool(agreed) else f"{agreed}, {compressed=}"
            else:
                got[what] = answer.status
            answer.close()
    wrong = [(what[:60], got[what], want) for what, _, want in OFFERS if got[what] != want]
    assert not wrong, "\n".join(map(repr, wrong))
    assert "Traceback" not in proc.stderr_text()


# --- frames a client must not send ---


def bomb(mib: int = 48) -> bytes:
    """``mib`` MiB of zeros as one compressed message: 50 KB on the wire, under the 64 KiB
    frame limit, so only the inflated size can refuse it. Made of one compressed MiB (which
    refers to nothing before it but zeros) repeated, in milliseconds."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    body = (one * mib)[:-4]  # RFC 7692 7.2.1: without the last flush's 00 00 ff ff
    assert len(body) < 65536
    return body


PING_REQUEST = orjson.dumps({"type": "ping", "id": "p"})

# (what, offer permessage-deflate?, the frames, the close code; None: a pong must come back)
FRAMES: list[tuple[str, bool, list[bytes], int | None]] = [
    ("a compressed request", True, [client_frame(TEXT, deflated(PING_REQUEST), FIN | RSV1)], None),
    (
        "a compressed request in two fragments",
        True,
        [
            client_frame(TEXT, deflated(PING_REQUEST)[:5], RSV1),
            client_frame(CONTINUATION, deflated(PING_REQUEST)[5:]),
        ],
        None,
    ),
    *[("deflate bomb", True, [client_frame(TEXT, bomb(), FIN | RSV1)], 1009)] * 10,
    (
        "RSV1 without permessage-deflate",
        False,
        [client_frame(TEXT, deflated(PING_REQUEST), FIN | RSV1)],
        1002,
    ),
    ("RSV2", False, [client_frame(TEXT, PING_REQUEST, FIN | RSV2)], 1002),
    ("RSV3", False, [client_frame(TEXT, PING_REQUEST, FIN | RSV3)], 1002),
    ("RSV2 under deflate", True, [client_frame(TEXT, PING_REQUEST, FIN | RSV2)], 1002),
    ("RSV3 under deflate", True, [client_frame(TEXT, PING_REQUEST, FIN | RSV3)], 1002),
    ("a compressed ping", True, [client_frame(PING, deflated(b"hello"), FIN | RSV1)], 1002),
    (
        "a compressed close",
        True,
        [client_frame(CLOSE, deflated(struct.pack("!H", 1000)), FIN | RSV1)],
        1002,
    ),
    (
        "RSV1 on a continuation",
        True,
        [
            client_frame(TEXT, deflated(PING_REQUEST)[:5], RSV1),
            client_frame(CONTINUATION, deflated(PING_REQUEST)[5:], FIN | RSV1),
        ],
        1002,
    ),
    ("not deflate data", True, [client_frame(TEXT, b"\xff" * 64, FIN | RSV1)], 1002),
]


async def outcome(answer: Answer, timeout: float = 5) -> int | str | None:
    """The close code the server sent ("dropped": it closed without one, "no answer": it kept
    the connection and said nothing), or None once the ``pong`` came back."""
    try:
        while True:
            first, payload = await read_frame(answer.reader, timeout)
            if first & 0x0F == CLOSE:
                return close_code(payload)
            if first & 0x0F == TEXT and b'"pong"' in payload:
                return None
    except (asyncio.IncompleteReadError, ConnectionError):
        return "dropped"
    except asyncio.TimeoutError:
        return "no answer"


@pytest.mark.gen_test(timeout=60)
async def test_frames_a_compressing_client_must_not_send_are_closed(serve_process):
    proc = serve_process(attack_config())
    got: dict[int, tuple[int | str | None, float]] = {}
    async with Guard(proc, rss_bound_kib=10 * MIB):

        async def attack(i: int, deflate: bool, frames: list[bytes]) -> None:
            answer = await handshake(proc.port, [b"permessage-deflate"] if deflate else [])
            assert answer.status == 101 and bool(answer.extensions) == deflate
            _, (hello,) = await messages(answer)
            assert hello["type"] == "welcome"
            started = time.monotonic()
            answer.writer.write(b"".join(frames))
            got[i] = (await outcome(answer), time.monotonic() - started)
            answer.close()

        await asyncio.gather(
            *(attack(i, deflate, frames) for i, (_, deflate, frames, _) in enumerate(FRAMES))
        )
    wrong = [
        (what, got[i][0], want) for i, (what, _, _, want) in enumerate(FRAMES) if got[i][0] != want
    ]
    assert not wrong, "\n".join(map(repr, wrong))
    assert max(seconds for _, seconds in got.values()) < 2
    assert "Traceback" not in proc.stderr_text()
