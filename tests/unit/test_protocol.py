"""protocol.parse: valid messages become requests, everything else a ProtocolError with a known
code, for any input (hypothesis), plus the encoders' wire shapes."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsentinel_websocket import protocol
from netsentinel_websocket.filters import MATCH_ALL
from netsentinel_websocket.positions import Position
from netsentinel_websocket.protocol import (
    ERROR_CODES,
    Ack,
    Auth,
    Ping,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    parse,
)

PARSE_CODES = {"bad_request", "unknown_type"}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["type", "id", "channels", "filter", "since", "token", "alert_id", "note", "x"]
)
filter_values = st.dictionaries(
    st.sampled_from(["min_severity", "event_types", "src_ip", "tags", "nope"]),
    json_values
    | st.lists(st.sampled_from(["10.0.0.0/8", "::1", "300.1.1.1/8", "a.*", "[", "x"]), max_size=3)
    | st.sampled_from(["info", "high", "HIGH", ""]),
    max_size=4,
)
# objects that look like protocol messages, so most examples get past the first checks
near_messages = st.fixed_dictionaries(
    {"type": st.sampled_from([*protocol._FIELDS, "Ping", "event"]) | json_values},
    optional={
        "id": st.integers(-(2**60), 2**60) | st.text(max_size=70) | json_values,
        "channels": st.lists(st.sampled_from(["threats", "alerts", "", "x" * 65]), max_size=3)
        | json_values,
        "filter": filter_values | json_values,
        "since": st.dictionaries(
            st.sampled_from(["threats", "alerts"]),
            st.fixed_dictionaries({"epoch": json_values, "offset": json_values}) | json_values,
            max_size=2,
        )
        | json_values,
        "token": st.text(max_size=30) | json_values,
        "alert_id": st.text(max_size=30) | json_values,
        "note": st.text(max_size=30) | json_values,
        "x": json_values,
    },
)


def outcome(data: str | bytes) -> protocol.Request | ProtocolError:
    """parse's result or its ProtocolError; any other exception fails the property."""
    try:
        return parse(data)
    except ProtocolError as exc:
        return exc


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_text_or_bytes_is_a_request_or_a_protocol_error(data):
    result = outcome(data)
    if isinstance(result, ProtocolError):
        assert result.code in PARSE_CODES
        assert result.message


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values | near_messages)
def test_any_json_is_a_request_or_a_known_error_carrying_its_valid_id(value):
    result = outcome(json.dumps(value))
    if isinstance(result, ProtocolError):
        assert result.code in PARSE_CODES <= ERROR_CODES
        if result.request_id is not None:
            assert result.request_id == value["id"]
        return
    assert isinstance(value, dict) and result.id == value.get("id")
    assert type(result).__name__.lower() == value["type"]


def documented_id(message: object) -> protocol.RequestId:
    """The id a reply must carry, from docs/protocol.md rather than from the code under test:
    an integer within +-2^53 or a string of at most 64 characters, else none."""
    value = message.get("id") if isinstance(message, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and -9_007_199_254_740_992 <= value <= 9_007_199_254_740_992:
        return value
    if isinstance(value, str) and len(value) <= 64:
        return value
    return None


@settings(max_examples=200)
@given(near_messages)
def test_valid_ids_always_come_back(value):
    data = json.dumps(value)
    try:
        decoded = orjson.loads(data)  # NaN or a 65-bit integer anywhere: not JSON to the server
    except orjson.JSONDecodeError:
        decoded = None
    result = outcome(data)
    expected = documented_id(decoded)
    assert (result.request_id if isinstance(result, ProtocolError) else result.id) == expected
    assert protocol.peek_id(data) == expected


VALID = [
    ({"type": "ping", "id": 3}, Ping(3)),
    ({"type": "ping"}, Ping(None)),
    ({"type": "auth", "id": "a", "token": "t.t.t"}, Auth("a", "t.t.t")),
    ({"type": "ack", "id": 5, "alert_id": "A-1"}, Ack(5, "A-1", "")),
    ({"type": "ack", "id": 5, "alert_id": "A-1", "note": "fp"}, Ack(5, "A-1", "fp")),
    ({"type": "unsubscribe", "id": 2, "channels": ["a", "a", "b"]}, Unsubscribe(2, ("a", "b"))),
    ({"type": "subscribe", "id": 1, "channels": ["threats"]}, Subscribe(1, ("threats",))),
    (
        {"type": "subscribe", "id": 1, "channels": ["threats"], "filter": {}},
        Subscribe(1, ("threats",), MATCH_ALL),
    ),
]


@pytest.mark.parametrize(("message", "expected"), VALID, ids=lambda v: str(v)[:40])
def test_valid_messages(message, expected):
    assert parse(orjson.dumps(message)) == expected


def test_subscribe_with_filter_and_since():
    request = parse(
        orjson.dumps(
            {
                "type": "subscribe",
                "id": 1,
                "channels": ["threats", "alerts"],
                "filter": {"min_severity": "high", "event_types": ["threat.*"]},
                "since": {"threats": {"epoch": "E", "offset": 41}},
            }
        )
    )
    assert isinstance(request, Subscribe)
    assert request.since == {"threats": Position("E", 41)}
    assert request.filter.match({"severity": "critical", "event_type": "threat.detected"})
    assert not request.filter.match({"severity": "medium", "event_type": "threat.detected"})


SUBSCRIBE_A = '{"type": "subscribe", "channels": ["a"], '
BAD = [
    ("not json", "{", "bad_request", None),
    ("array", "[1]", "bad_request", None),
    ("string", '"ping"', "bad_request", None),
    ("no type", '{"id": 1}', "bad_request", 1),
    ("type number", '{"type": 1, "id": 1}', "bad_request", 1),
    ("unknown type", '{"type": "shutdown", "id": 1}', "unknown_type", 1),
    ("unknown field", '{"type": "ping", "id": 1, "extra": 0}', "bad_request", 1),
    ("id bool", '{"type": "ping", "id": true}', "bad_request", None),
    ("id float", '{"type": "ping", "id": 1.5}', "bad_request", None),
    ("id object", '{"type": "ping", "id": {}}', "bad_request", None),
    ("id too long", '{"type": "ping", "id": "%s"}' % ("x" * 65), "bad_request", None),
    ("id too big", '{"type": "ping", "id": 9007199254740993}', "bad_request", None),
    ("channels missing", '{"type": "subscribe", "id": 1}', "bad_request", 1),
    ("channels empty", '{"type": "subscribe", "id": 1, "channels": []}', "bad_request", 1),
    ("channels str", '{"type": "unsubscribe", "id": 1, "channels": "a"}', "bad_request", 1),
    ("channel int", '{"type": "subscribe", "id": 1, "channels": [1]}', "bad_request", 1),
    (
        "too many channels",
        orjson.dumps({"type": "subscribe", "channels": ["c"] * 65}),
        "bad_request",
        None,
    ),
    (
        "filter list",
        '{"type": "subscribe", "id": 1, "channels": ["a"], "filter": []}',
        "bad_request",
        1,
    ),
    (
        "since list",
        '{"type": "subscribe", "id": 1, "channels": ["a"], "since": []}',
        "bad_request",
        1,
    ),
    (
        "since other channel",
        SUBSCRIBE_A + '"since": {"b": {"epoch": "E", "offset": 1}}}',
        "bad_request",
        None,
    ),
    (
        "since offset negative",
        SUBSCRIBE_A + '"since": {"a": {"epoch": "E", "offset": -1}}}',
        "bad_request",
        None,
    ),
    (
        "since epoch int",
        SUBSCRIBE_A + '"since": {"a": {"epoch": 1, "offset": 1}}}',
        "bad_request",
        None,
    ),
    (
        "since extra key",
        SUBSCRIBE_A + '"since": {"a": {"epoch": "E", "offset": 1, "x": 1}}}',
        "bad_request",
        None,
    ),
    ("token missing", '{"type": "auth", "id": 1}', "bad_request", 1),
    ("token empty", '{"type": "auth", "id": 1, "token": ""}', "bad_request", 1),
    ("alert_id int", '{"type": "ack", "id": 1, "alert_id": 7}', "bad_request", 1),
    ("note int", '{"type": "ack", "id": 1, "alert_id": "A", "note": 7}', "bad_request", 1),
    (
        "note too long",
        orjson.dumps({"type": "ack", "alert_id": "A", "note": "n" * 2001}),
        "bad_request",
        None,
    ),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "bad_request", None),
    ("NaN", '{"type": "ping", "id": NaN}', "bad_request", None),
]


@pytest.mark.parametrize(
    ("data", "code", "request_id"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_messages(data, code, request_id):
    with pytest.raises(ProtocolError) as info:
        parse(data)
    assert (info.value.code, info.value.request_id) == (code, request_id)


def test_error_messages_do_not_echo_long_input():
    with pytest.raises(ProtocolError) as info:
        parse(orjson.dumps({"type": "x" * 10_000}))
    assert len(info.value.message) < 100


def test_an_undeclared_error_code_is_a_programming_error():
    with pytest.raises(AssertionError):
        ProtocolError("oops", "not in ERROR_CODES")


@pytest.mark.parametrize(
    ("data", "expected"),
    [('{"id": 7}', 7), ('{"id": "r"}', "r"), ('{"id": true}', None), ("[1]", None), ("{", None)],
)
def test_peek_id(data, expected):
    assert protocol.peek_id(data) == expected


@pytest.mark.parametrize(
    ("subprotocols", "token"),
    [
        (["netsentinel.v1", "bearer.abc.def.ghi"], "abc.def.ghi"),
        (["bearer.x", "bearer.y"], "x"),
        (["netsentinel.v1"], None),
        ([], None),
    ],
)
def test_token_from_subprotocols(subprotocols, token):
    assert protocol.token_from_subprotocols(subprotocols) == token


def test_server_messages():
    assert orjson.loads(protocol.error("forbidden", "no", 4)) == {
        "type": "error",
        "id": 4,
        "code": "forbidden",
        "message": "no",
    }
    assert orjson.loads(protocol.reply("pong", 3, server_time=1.5)) == {
        "type": "pong",
        "id": 3,
        "server_time": 1.5,
    }
    welcome = orjson.loads(protocol.welcome("c", "n", 1.0, ["threats"], 99.9))
    assert welcome == {
        "type": "welcome",
        "protocol": 1,
        "connection_id": "c",
        "node_id": "n",
        "server_time": 1.0,
        "channels": ["threats"],
        "expires_at": 99,
    }
    assert orjson.loads(protocol.subscribed(1, ["t"], {"t": Position("E", 4)}, {"t": True})) == {
        "type": "subscribed",
        "id": 1,
        "channels": ["t"],
        "positions": {"t": {"epoch": "E", "offset": 4}},
        "recovered": {"t": True},
    }
    assert orjson.loads(protocol.gap("t", "E2", Position("E", 3))) == {
        "type": "gap",
        "channel": "t",
        "epoch": "E2",
        "from": {"epoch": "E", "offset": 3},
    }


# --- bounds, each at the last accepted value and the first refused one ---------------------------

TWO_53 = 9_007_199_254_740_992  # 2^53: the largest integer every JSON client holds exactly
TWO_63 = 9_223_372_036_854_775_808  # 2^63: one past the largest offset (a signed 64-bit integer)


def refusal(message: dict | str | bytes) -> tuple[str, protocol.RequestId, str]:
    """(code, request id, message) of the ProtocolError that parsing ``message`` raises."""
    data = message if isinstance(message, str | bytes) else orjson.dumps(message)
    with pytest.raises(ProtocolError) as info:
        parse(data)
    assert str(info.value) == info.value.message
    return info.value.code, info.value.request_id, info.value.message


@pytest.mark.parametrize("request_id", [TWO_53, -TWO_53, 0, "", "x" * 64])
def test_ids_at_the_bounds_are_accepted(request_id):
    assert parse(orjson.dumps({"type": "ping", "id": request_id})) == Ping(request_id)


@pytest.mark.parametrize(
    ("request_id", "message"),
    [
        (TWO_53 + 1, "'id' is out of range"),
        (-TWO_53 - 1, "'id' is out of range"),
        (2**64 - 1, "'id' is out of range"),
        ("x" * 65, "'id' is longer than 64 characters"),
        (True, "'id' must be an integer or a string"),
        (1.5, "'id' must be an integer or a string"),
        ([1], "'id' must be an integer or a string"),
    ],
)
def test_ids_past_the_bounds_are_refused_without_an_id(request_id, message):
    assert refusal({"type": "ping", "id": request_id}) == ("bad_request", None, message)


def subscribe_since(position: object, channel: str = "a") -> dict:
    return {"type": "subscribe", "id": 1, "channels": [channel], "since": {channel: position}}


@pytest.mark.parametrize("offset", [0, 1, TWO_63 - 1])
def test_offsets_up_to_2_63_minus_1_are_accepted(offset):
    request = parse(orjson.dumps(subscribe_since({"epoch": "E", "offset": offset})))
    assert request == Subscribe(1, ("a",), MATCH_ALL, {"a": Position("E", offset)})


@pytest.mark.parametrize("offset", [TWO_63, -1, True, False, 1.0, "1", None])
def test_offsets_outside_0_to_2_63_minus_1_are_refused(offset):
    assert refusal(subscribe_since({"epoch": "E", "offset": offset})) == (
        "bad_request",
        1,
        "since.a.offset must be a non-negative integer",
    )


def test_epochs_up_to_128_characters_are_accepted():
    request = parse(orjson.dumps(subscribe_since({"epoch": "e" * 128, "offset": 3})))
    assert isinstance(request, Subscribe) and request.since == {"a": Position("e" * 128, 3)}
    for epoch in ("e" * 129, 7, None):
        assert refusal(subscribe_since({"epoch": epoch, "offset": 3})) == (
            "bad_request",
            1,
            "since.a.epoch must be a string",
        )


def test_channel_names_of_1_to_64_characters_are_accepted():
    for name in ("c", "c" * 64):
        assert parse(orjson.dumps({"type": "unsubscribe", "channels": [name]})) == Unsubscribe(
            None, (name,)
        )
    for names in (["c" * 65], [""], ["ok", 1]):
        assert refusal({"type": "unsubscribe", "id": 4, "channels": names}) == (
            "bad_request",
            4,
            "'channels' must hold channel names (strings)",
        )


def test_up_to_64_channels_are_accepted():
    names = [f"c{n}" for n in range(64)]
    request = parse(orjson.dumps({"type": "subscribe", "id": 2, "channels": names}))
    assert request == Subscribe(2, tuple(names))
    assert refusal({"type": "subscribe", "id": 2, "channels": [*names, "c64"]}) == (
        "bad_request",
        2,
        "'channels' has more than 64 names",
    )


def test_alert_ids_up_to_256_and_notes_up_to_2000_characters_are_accepted():
    ack = {"type": "ack", "id": 9, "alert_id": "A" * 256, "note": "n" * 2000}
    assert parse(orjson.dumps(ack)) == Ack(9, "A" * 256, "n" * 2000)
    assert refusal({**ack, "alert_id": "A" * 257}) == (
        "bad_request",
        9,
        "'alert_id' is longer than 256 characters",
    )
    assert refusal({**ack, "note": "n" * 2001}) == (
        "bad_request",
        9,
        "'note' is longer than 2000 characters",
    )


def test_a_tokens_size_is_left_to_the_verifier():
    """One limit for tokens, however they come: the verifier's (`token too large`, 4001)."""
    assert parse(orjson.dumps({"type": "auth", "token": "t" * 60_000})) == Auth(None, "t" * 60_000)


# --- error messages: what a client reads in the `error` reply ----------------------------------

LONG = "z" * 100
MESSAGES = [
    ("{", None, "message is not valid JSON"),
    ("[1]", None, "message must be a JSON object"),
    ({"id": 1}, 1, "'type' must be a string"),
    ({"type": "ping", "id": 1, LONG: 0}, 1, f"unknown field '{'z' * 40}'"),
    ({"type": "subscribe", "id": 1}, 1, "'channels' must be a non-empty list of channel names"),
    (
        {"type": "subscribe", "id": 1, "channels": []},
        1,
        "'channels' must be a non-empty list of channel names",
    ),
    (
        {"type": "subscribe", "id": 1, "channels": ["a"], "filter": []},
        1,
        "filter must be an object",
    ),
    (
        {"type": "subscribe", "id": 1, "channels": ["a"], "since": []},
        1,
        "'since' must be an object of channel positions",
    ),
    (
        {"type": "subscribe", "id": 1, "channels": ["a"], "since": {LONG: {}}},
        1,
        f"'since' names channel '{'z' * 40}' that is not subscribed",
    ),
    (
        subscribe_since({"epoch": "E"}, "y" * 50),
        1,
        f'since.{"y" * 40} must be {{"epoch": string, "offset": integer}}',
    ),
    (
        subscribe_since({"epoch": 1, "offset": 1}, "y" * 50),
        1,
        f"since.{'y' * 40}.epoch must be a string",
    ),
    (
        subscribe_since({"epoch": "E", "offset": -1}, "y" * 50),
        1,
        f"since.{'y' * 40}.offset must be a non-negative integer",
    ),
    ({"type": "auth", "id": 1}, 1, "'token' must be a non-empty string"),
    ({"type": "ack", "id": 1, "alert_id": ""}, 1, "'alert_id' must be a non-empty string"),
    ({"type": "ack", "id": 1, "alert_id": "A", "note": 7}, 1, "'note' must be a string"),
]


@pytest.mark.parametrize(("message", "request_id", "text"), MESSAGES, ids=lambda v: str(v)[:30])
def test_error_messages(message, request_id, text):
    assert refusal(message) == ("bad_request", request_id, text)


def test_unknown_types_are_named_in_at_most_40_characters():
    assert refusal({"type": "shutdown", "id": "s"}) == (
        "unknown_type",
        "s",
        "unknown message type 'shutdown'",
    )
    assert refusal({"type": LONG}) == ("unknown_type", None, f"unknown message type '{'z' * 40}'")


# --- the client's side of the wire ---


def test_server_messages_decode_to_typed_values():
    from netsentinel_websocket import protocol as p

    frame = (
        '{"type":"welcome","protocol":1,"connection_id":"c","node_id":"n","server_time":1.5,'
        '"channels":["threats"],"expires_at":99}\n'
        '{"type":"subscribed","id":1,"channels":["threats"],'
        '"positions":{"threats":{"epoch":"E","offset":4}},"recovered":{"threats":true}}\n'
        '{"type":"event","channel":"threats","epoch":"E","offset":5,"event":{"id":"x"}}\n'
        '{"type":"gap","channel":"threats","epoch":"F","from":{"epoch":"E","offset":5}}\n'
        '{"type":"unsubscribed","id":null,"channels":["threats"]}\n'
        '{"type":"auth_ok","id":7,"expires_at":120}\n'
        '{"type":"error","id":2,"code":"forbidden","message":"no"}\n'
        '{"type":"pong","id":3,"server_time":2.0}\n'
        '{"type":"from_the_future","id":4}'
    )
    assert p.decode_frame(frame) == [
        p.Welcome("c", "n", 1.5, ("threats",), 99.0),
        p.Subscribed(1, ("threats",), {"threats": Position("E", 4)}, {"threats": True}),
        p.EventMessage("threats", "E", 5, {"id": "x"}),
        p.GapMessage("threats", "F", Position("E", 5)),
        p.Unsubscribed(None, ("threats",)),
        p.AuthOk(7, 120.0),
        p.ErrorReply(2, "forbidden", "no"),
        p.OtherMessage("pong", 3),
        p.OtherMessage("from_the_future", 4),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1]",
        '{"no":"type"}',
        '{"type":"event","channel":"c","epoch":"E","offset":"5","event":{}}',
        '{"type":"event","channel":"c","epoch":"E","offset":true,"event":{}}',
        '{"type":"event","channel":"c","epoch":"E","offset":5,"event":[]}',
        '{"type":"gap","channel":"c","epoch":"E"}',
        '{"type":"subscribed","id":1,"channels":"c"}',
        '{"type":"auth_ok","id":1,"expires_at":"soon"}',
    ],
)
def test_a_malformed_server_message_is_refused(text):
    from netsentinel_websocket import protocol as p

    with pytest.raises(p.MalformedMessage):
        p.decode_frame(text)


def test_client_requests_are_spelled_as_the_server_parses_them():
    from netsentinel_websocket import protocol as p

    text = p.subscribe_request(
        3, ["threats"], {"min_severity": "high"}, {"threats": Position("E", 9)}
    )
    assert orjson.loads(text) == {
        "type": "subscribe",
        "id": 3,
        "channels": ["threats"],
        "filter": {"min_severity": "high"},
        "since": {"threats": {"epoch": "E", "offset": 9}},
    }
    request = parse(text)
    assert (request.id, request.channels, request.since) == (
        3,
        ("threats",),
        {"threats": Position("E", 9)},
    )
    assert orjson.loads(p.subscribe_request(1, ["a"])) == {
        "type": "subscribe",
        "id": 1,
        "channels": ["a"],
    }
    assert parse(p.auth_request(4, "tok")) == Auth(4, "tok")


def test_a_frame_is_split_at_newlines_only_and_may_come_as_bytes():
    frame = (
        '{"type": "error", "id": 1, "code": "forbidden", "message": "not allowed here"}\n'
        '{"type": "pong", "id": 2}\n'
    )
    expected = [
        protocol.ErrorReply(1, "forbidden", "not allowed here"),
        protocol.OtherMessage("pong", 2),
    ]
    assert protocol.decode_frame(frame) == expected
    assert protocol.decode_frame(frame.encode()) == expected


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (b'{"type":"pong","id":"\xff"}', "frame is not UTF-8"),
        ("not json", "message is not valid JSON"),
        ("[1]", "message is not an object with a type"),
        ('{"type":7}', "message is not an object with a type"),
        (
            '{"type":"event","channel":"c","epoch":"E","offset":5,"event":[]}',
            "bad 'event' message (TypeError)",
        ),
        ('{"type":"gap","channel":"c","epoch":"E"}', "bad 'gap' message (KeyError)"),
        ('{"type":"auth_ok","id":1,"expires_at":true}', "bad 'auth_ok' message (TypeError)"),
        ('{"type":"auth_ok","id":1,"expires_at":"soon"}', "bad 'auth_ok' message (TypeError)"),
        (
            '{"type":"subscribed","id":1,"channels":["c"],"positions":[1],"recovered":{}}',
            "bad 'subscribed' message (TypeError)",
        ),
        (
            '{"type":"subscribed","id":1,"channels":["c"],"positions":{},"recovered":[1]}',
            "bad 'subscribed' message (TypeError)",
        ),
        ('{"type":"welcome","channels":"c"}', "bad 'welcome' message (TypeError)"),
    ],
)
def test_a_malformed_server_message_is_named_in_the_error(frame, text):
    """The client reports it as ``malformed server message: <text>``."""
    with pytest.raises(protocol.MalformedMessage) as info:
        protocol.decode_frame(frame)
    assert str(info.value) == text


def test_fields_a_server_may_leave_out_decode_to_empty_values():
    assert protocol.decode_frame('{"type":"welcome"}') == [protocol.Welcome("", "", 0.0, (), None)]
    assert protocol.decode_frame('{"type":"error","id":1,"code":"rate_limited"}') == [
        protocol.ErrorReply(1, "rate_limited", "")
    ]
    assert protocol.decode_frame('{"type":"unsubscribed","id":5,"channels":["a","b"]}') == [
        protocol.Unsubscribed(5, ("a", "b"))
    ]
