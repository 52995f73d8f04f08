"""Server text frames at every length encoding boundary of RFC 6455 section 5.2."""

import pytest

from netsentinel_websocket.frames import text_frame
from tests.conftest import next_frame


@pytest.mark.parametrize(
    ("size", "header"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)],
)
def test_length_encodings_round_trip(size, header):
    payload = b"x" * size
    frame = text_frame(payload)
    assert len(frame) == header + size
    assert frame[0] == 0x81  # FIN + text, no RSV bits: no extension is negotiated
    assert frame[1] & 0x80 == 0  # server frames are never masked
    assert next_frame(frame) == (1, payload, len(frame))


def test_coalesce_splits_at_the_limit_and_keeps_order():
    from netsentinel_websocket.frames import coalesce

    messages = [bytes([65 + i]) * 40 for i in range(10)]  # 40-byte messages
    frames = coalesce(messages, limit=100)  # two messages plus "\n" = 81 <= 100 < 122
    assert [count for _, count in frames] == [2, 2, 2, 2, 2]
    payloads = [frame[2:] for frame, _ in frames]  # short frames: 2-byte header
    assert b"\n".join(payloads).split(b"\n") == messages
    assert all(len(p) <= 100 for p in payloads)


def test_coalesce_gives_an_oversized_message_its_own_frame():
    from netsentinel_websocket.frames import coalesce

    frames = coalesce([b"a", b"x" * 300, b"b"], limit=100)
    assert [count for _, count in frames] == [1, 1, 1]
    assert coalesce([]) == []
