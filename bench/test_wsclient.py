"""The bench client's frame walker must count right however reads cut the stream."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from bench.wsclient import OP_CONT, OP_PING, OP_PONG, OP_TEXT, Subscriber, client_frame


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked frame as a server sends it."""
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length < 1 << 16:
        return bytes((first, 126)) + length.to_bytes(2, "big") + payload
    return bytes((first, 127)) + length.to_bytes(8, "big") + payload


def event(offset: int, pad: int) -> bytes:
    return orjson.dumps(
        {
            "type": "event",
            "channel": "events",
            "epoch": "E",
            "offset": offset,
            "event": {"id": str(offset), "data": {"sent_at": 0.0, "p": "x" * pad}},
        }
    )


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(data)

    def close(self) -> None:
        pass


def stream() -> tuple[bytes, int]:
    """Coalesced frames of every length class, a fragmented message and an interleaved ping."""
    frames, offset = [], 0
    for per_frame, pad in ((1, 10), (3, 200), (40, 2000), (1, 70_000)):
        lines = []
        for _ in range(per_frame):
            offset += 1
            lines.append(event(offset, pad))
        frames.append(server_frame(OP_TEXT, b"\n".join(lines)))
    offset += 1
    whole = event(offset, 50)
    cut = whole.index(b'"type"') + 4  # split the mark itself across two fragments
    frames += [
        server_frame(OP_TEXT, whole[:cut], fin=False),
        server_frame(OP_PING, b"hi"),
        server_frame(OP_CONT, whole[cut:]),
    ]
    return b"".join(frames), offset


@pytest.mark.parametrize("probe", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_counts_events_across_any_read_boundaries(probe: bool, seed: int) -> None:
    async def run() -> None:
        data, expected = stream()
        transport = FakeTransport()
        sub = Subscriber(b"", b"accept", probe, lambda s: None)
        sub.connection_made(transport)
        sub.handshaken, sub.parsing = True, False
        rng = random.Random(seed)
        pos = 0
        while pos < len(data):
            step = rng.choice((1, 2, 7, 13, 14, 100, 4096, 65536))
            sub.data_received(data[pos : pos + step])
            pos += step
        assert sub.events == expected
        assert sub.order_errors == 0
        assert [w[0] for w in transport.written[1:]] == [0x80 | OP_PONG]

    asyncio.run(run())


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 65535, 65536])
def test_client_frames_are_masked(length: int) -> None:
    payload = bytes(range(256)) * (length // 256 + 1)
    payload = payload[:length]
    frame = client_frame(OP_TEXT, payload)
    assert frame[1] & 0x80
    head = 2 + {126: 2, 127: 8}.get(frame[1] & 0x7F, 0)
    mask, body = frame[head : head + 4], frame[head + 4 :]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == payload
