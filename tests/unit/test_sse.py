"""The SSE stream's bytes, cursor and query (``sse.py``), without a server."""

from __future__ import annotations

import base64
import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsentinel_websocket import sse
from netsentinel_websocket.positions import Position, PreparedEvent, Publication
from netsentinel_websocket.sse import SSEError

CHANNELS = ("alerts", "threats")


def publication(channel: str, offset: int, size: int = 10) -> tuple[Publication, bytes]:
    prepared = PreparedEvent({"id": f"e{offset}", "pad": "x" * size}, 0.0)
    pub = Publication(channel, "E", offset, prepared)
    return pub, pub.message(None)


def unchunk(chunk: bytes) -> bytes:
    """The payload of one HTTP/1.1 chunk, checking its framing."""
    head, sep, rest = chunk.partition(b"\r\n")
    assert sep and re.fullmatch(rb"[0-9a-f]+", head)
    assert rest.endswith(b"\r\n")
    payload = rest[:-2]
    assert len(payload) == int(head, 16)
    return payload


def sse_events(payload: bytes) -> list[dict[str, bytes]]:
    """The SSE events of a payload, as field -> value, the way a browser's parser splits them."""
    events = []
    for block in payload.split(b"\n\n"):
        if not block:
            continue
        fields: dict[str, bytes] = {}
        for line in block.split(b"\n"):
            name, _, value = line.partition(b": ")
            fields[name.decode()] = value
        events.append(fields)
    return events


# --- chunks and the stream's bytes ---


def test_http_chunk_frames_the_payload_with_its_hex_length() -> None:
    assert sse.http_chunk(b"hello") == b"5\r\nhello\r\n"
    assert sse.http_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert unchunk(sse.HEARTBEAT) == b":\n\n"


def test_opening_sets_the_starting_cursor_without_an_event() -> None:
    cursor = {"threats": Position("E", 7)}
    payload = unchunk(sse.opening(cursor))
    assert payload.startswith(b": netsentinel\n")
    assert b"event:" not in payload and b"data:" not in payload
    (fields,) = sse_events(payload.split(b"\n", 1)[1])
    assert sse.decode_cursor(fields["id"].decode(), CHANNELS) == cursor


def test_gap_is_an_event_named_gap_with_its_cursor() -> None:
    cursor = {"alerts": Position("NEW", 0)}
    (fields,) = sse_events(unchunk(sse.gap(b'{"type":"gap"}', cursor)))
    assert fields["event"] == b"gap"
    assert fields["data"] == b'{"type":"gap"}'
    assert sse.decode_cursor(fields["id"].decode(), CHANNELS) == cursor


def test_each_event_carries_the_cursor_after_it_for_every_channel() -> None:
    cursor = {"alerts": Position("E", 3), "threats": Position("E", 10)}
    pubs = [publication("threats", 11), publication("alerts", 4), publication("threats", 12)]
    chunks = list(sse.event_chunks(cursor, pubs))
    assert [count for _, count in chunks] == [3]
    events = sse_events(unchunk(chunks[0][0]))
    assert [e["data"] for e in events] == [message for _, message in pubs]
    assert all(e["event"] == b"event" for e in events)
    cursors = [sse.decode_cursor(e["id"].decode(), CHANNELS) for e in events]
    assert cursors == [
        {"alerts": Position("E", 3), "threats": Position("E", 11)},
        {"alerts": Position("E", 4), "threats": Position("E", 11)},
        {"alerts": Position("E", 4), "threats": Position("E", 12)},
    ]
    assert cursor == cursors[-1]  # advanced in place, for the next batch


def test_a_burst_is_split_into_chunks_within_the_limit() -> None:
    cursor: dict[str, Position] = {}
    pubs = [publication("threats", n, size=300) for n in range(1, 21)]
    chunks = list(sse.event_chunks(cursor, pubs, limit=1000))
    assert sum(count for _, count in chunks) == 20
    assert len(chunks) > 5
    for chunk, count in chunks:
        payload = unchunk(chunk)
        assert len(payload) <= 1000
        assert len(sse_events(payload)) == count


def test_an_event_larger_than_the_limit_gets_a_chunk_of_its_own() -> None:
    pubs = [publication("threats", 1), publication("threats", 2, 5000), publication("threats", 3)]
    chunks = list(sse.event_chunks({}, pubs, limit=1000))
    assert [count for _, count in chunks] == [1, 1, 1]
    assert len(unchunk(chunks[1][0])) > 5000


def test_no_events_no_chunk() -> None:
    assert list(sse.event_chunks({}, [])) == []


# --- the cursor ---


@given(
    st.dictionaries(
        st.sampled_from(CHANNELS),
        st.builds(Position, st.text(max_size=40), st.integers(0, 2**63 - 1)),
    )
)
def test_a_cursor_decodes_to_what_was_encoded(positions: dict[str, Position]) -> None:
    text = sse.encode_cursor(positions).decode()
    assert re.fullmatch(r"[A-Za-z0-9_-]*", text)  # no padding, safe in a URL and a header
    assert sse.decode_cursor(text, CHANNELS) == positions


def _raw_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x" * (sse.MAX_CURSOR_CHARS + 1), "cursor too long"),
        ("not base64!", "malformed cursor"),
        ("é", "malformed cursor"),
        (base64.urlsafe_b64encode(b"{not json").decode(), "malformed cursor"),
        (_raw_cursor({"threats": 1}), "malformed cursor"),
        (_raw_cursor([["threats", "E"]]), "malformed cursor"),
        (_raw_cursor(["threats"]), "malformed cursor"),
        (_raw_cursor([["network", "E", 1]]), "cursor does not match the stream's channels"),
        (_raw_cursor([[7, "E", 1]]), "cursor does not match the stream's channels"),
        (
            _raw_cursor([["threats", "E", 1], ["threats", "E", 2]]),
            "cursor does not match the stream's channels",
        ),
        (_raw_cursor([["threats", 5, 1]]), "bad epoch in position"),
        (_raw_cursor([["threats", "E" * 129, 1]]), "bad epoch in position"),
        (_raw_cursor([["threats", "E", -1]]), "bad offset in position"),
        (_raw_cursor([["threats", "E", 2**63]]), "bad offset in position"),
        (_raw_cursor([["threats", "E", True]]), "bad offset in position"),
        (_raw_cursor([["threats", "E", 1.5]]), "bad offset in position"),
    ],
)
def test_a_cursor_that_is_not_ours_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(SSEError, match=f"^{re.escape(message)}$"):
        sse.decode_cursor(text, CHANNELS)


def test_the_longest_cursor_allowed_is_still_read() -> None:
    text = _raw_cursor([["threats", "E", 1]])
    padded = text + "A" * (sse.MAX_CURSOR_CHARS - len(text))
    with pytest.raises(SSEError, match="malformed cursor"):  # read, then found not to be JSON
        sse.decode_cursor(padded, CHANNELS)
    assert sse.position("E" * sse.MAX_EPOCH_CHARS, 2**63 - 1).offset == 2**63 - 1


# --- the query ---


def test_channels_keep_their_order_once_each() -> None:
    assert sse.parse_channels("threats,alerts,threats,,", 8) == ("threats", "alerts")
    assert sse.parse_channels("a,b", 2) == ("a", "b")


@pytest.mark.parametrize("raw", [None, "", ",,"])
def test_channels_are_required(raw: str | None) -> None:
    with pytest.raises(SSEError, match="channels is required"):
        sse.parse_channels(raw, 8)


def test_more_channels_than_allowed_are_refused() -> None:
    with pytest.raises(SSEError, match="at most 2 channels"):
        sse.parse_channels("a,b,c", 2)


def test_the_filter_comes_from_comma_lists() -> None:
    query = {
        "min_severity": "high",
        "event_types": "honeypot.ssh.*,,honeypot.http.*",
        "src_ip": "10.0.0.0/8",
        "tags": "a,b",
        "other": "ignored",
    }
    parsed = sse.parse_query_filter(query)
    assert parsed.key == (
        "high",
        ("honeypot.http.*", "honeypot.ssh.*"),
        ("10.0.0.0/8",),
        ("a", "b"),
    )
    assert sse.parse_query_filter({}).match_all


@pytest.mark.parametrize(
    "query", [{"min_severity": "huge"}, {"src_ip": "not-a-network"}, {"event_types": "["}]
)
def test_a_bad_filter_is_an_sse_error(query: dict[str, str]) -> None:
    with pytest.raises(SSEError):
        sse.parse_query_filter(query)
