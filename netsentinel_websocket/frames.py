"""WebSocket text frames built once and written as the same bytes to every subscriber.

Server-to-client frames are unmasked (RFC 6455 section 5.1), so one frame serves every client
that has not negotiated an extension; the endpoint does not offer compression.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

_FIN_TEXT = 0x81

#: Largest payload the server coalesces into one frame. Bursts and resumes are split at this
#: size so clients with common message limits (10 MiB and less) never see an oversized frame,
#: and the per-connection queue bound works on frames of a known size.
MAX_FRAME_PAYLOAD = 1024 * 1024


def text_frame(payload: bytes) -> bytes:
    """A single final text frame holding ``payload`` (UTF-8 JSON)."""
    n = len(payload)
    if n < 126:
        header = bytes((_FIN_TEXT, n))
    elif n < 65536:
        header = struct.pack("!BBH", _FIN_TEXT, 126, n)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, n)
    return header + payload


def coalesce(messages: Iterable[bytes], limit: int = MAX_FRAME_PAYLOAD) -> list[tuple[bytes, int]]:
    """Pack ``\n``-separated messages into as few frames as fit ``limit`` (a larger message
    gets a frame of its own); returns each frame with the number of messages it holds."""
    return list(iter_frames(messages, limit))


def iter_frames(
    messages: Iterable[bytes], limit: int = MAX_FRAME_PAYLOAD
) -> Iterator[tuple[bytes, int]]:
    """:func:`coalesce`, one frame at a time: a long replay is never built whole."""
    batch: list[bytes] = []
    size = 0
    for message in messages:
        if batch and size + 1 + len(message) > limit:
            yield text_frame(b"\n".join(batch)), len(batch)
            batch, size = [], 0
        size += len(message) + (1 if batch else 0)
        batch.append(message)
    if batch:
        yield text_frame(b"\n".join(batch)), len(batch)
