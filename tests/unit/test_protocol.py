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


@settings(max_examples=200)
@given(near_messages)
def test_valid_ids_always_come_back(value):
    result = outcome(json.dumps(value))
    valid_id = protocol.peek_id(json.dumps(value))
    assert (result.request_id if isinstance(result, ProtocolError) else result.id) == valid_id


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
    ("token too long", orjson.dumps({"type": "auth", "token": "t" * 16385}), "bad_request", None),
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
