"""The per-connection protocol without a socket: calls in, actions out."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from netsentinel_websocket.auth import Principal
from netsentinel_websocket.disconnect import Disconnect
from netsentinel_websocket.protocol import Subscribe
from netsentinel_websocket.session import (
    Acknowledge,
    Arm,
    Close,
    Fail,
    Join,
    Leave,
    Regroup,
    Send,
    Session,
    SessionSettings,
    Verify,
)

CHANNELS = ("threats", "alerts", "events")
SETTINGS = SessionSettings(
    auth_timeout=5.0,
    allow_query_token=False,
    leeway=2.0,
    messages_per_second=10.0,
    max_subscriptions=2,
)
WALL = 1_800_000_000.0


def principal(
    sub: str = "analyst", scopes: str = "channel:*", expires: float = WALL + 600
) -> Principal:
    return Principal(sub, frozenset(scopes.split()), expires)


def session(**overrides: Any) -> Session:
    settings = dataclasses.replace(SETTINGS, **overrides)
    return Session(settings, CHANNELS, "c-1", "node-1", now=100.0)


def sent(actions: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(a.message) for a in actions if isinstance(a, Send)]


def authed(scopes: str = "channel:*") -> Session:
    s = session()
    s.handshake("Bearer tok", None, None)
    s.verified(principal(scopes=scopes), None, WALL)
    return s


def msg(**fields: Any) -> str:
    return json.dumps(fields)


# --- handshake ---


def test_the_header_token_wins_over_the_subprotocol_and_the_query():
    assert session().handshake("Bearer header", "sub", "query") == [Verify("header", None)]
    assert session().handshake(None, "sub", "query") == [Verify("sub", None)]


def test_a_malformed_authorization_header_is_refused_without_verifying():
    actions = session().handshake("Basic dXNlcg==", None, None)
    assert actions == [Arm(None), Close(Disconnect(4001, "malformed authorization header"))]


def test_a_query_token_is_refused_unless_allowed():
    assert session().handshake(None, None, "q") == [
        Arm(None),
        Close(Disconnect(4001, "query token not allowed")),
    ]
    assert session(allow_query_token=True).handshake(None, None, "q") == [Verify("q", None)]


def test_without_a_token_the_auth_timer_is_armed_and_its_firing_closes_4001():
    s = session()
    assert s.handshake(None, None, None) == [Arm(5.0)]
    assert s.timer() == [Arm(None), Close(Disconnect(4001, "auth timeout"))]
    assert s.timer() == [] and s.receive(msg(type="ping"), 101.0, WALL) == []


# --- authentication ---


def test_before_a_token_only_an_auth_message_is_accepted():
    s = session()
    s.handshake(None, None, None)
    assert s.receive(msg(type="ping", id=1), 101.0, WALL) == [
        Arm(None),
        Close(Disconnect(4001, "authentication required")),
    ]
    other = session()
    other.handshake(None, None, None)
    assert other.receive(msg(type="auth", id=7, token="t"), 101.0, WALL) == [Verify("t", 7)]
    assert session().receive("not json", 101.0, WALL)[-1] == Close(
        Disconnect(4001, "authentication required")
    )


def test_first_verification_sends_welcome_and_arms_the_expiry_with_leeway():
    s = session()
    s.handshake("Bearer tok", None, None)
    actions = s.verified(principal(scopes="channel:threats", expires=WALL + 60), None, WALL)
    (welcome,) = sent(actions)
    assert welcome == {
        "type": "welcome",
        "protocol": 1,
        "connection_id": "c-1",
        "node_id": "node-1",
        "server_time": WALL,
        "channels": ["threats"],
        "expires_at": int(WALL + 60),
    }
    assert actions[-1] == Arm(62.0)


def test_first_message_auth_is_answered_with_auth_ok_after_welcome():
    s = session()
    s.handshake(None, None, None)
    s.receive(msg(type="auth", id=7, token="t"), 101.0, WALL)
    replies = sent(s.verified(principal(), 7, WALL))
    assert [r["type"] for r in replies] == ["welcome", "auth_ok"]
    assert replies[1] == {"type": "auth_ok", "id": 7, "expires_at": int(WALL + 600)}


def test_an_expired_token_timer_closes_4004():
    s = authed()
    assert s.timer() == [Arm(None), Close(Disconnect(4004, "token expired"))]


def test_a_refused_token_closes_4001_with_its_reason():
    s = session()
    s.handshake("Bearer x", None, None)
    assert s.refused("bad signature") == [Arm(None), Close(Disconnect(4001, "bad signature"))]
    assert s.verified(principal(), None, WALL) == []  # too late: closed


def test_a_refresh_for_another_subject_closes_4001():
    s = authed()
    actions = s.verified(principal(sub="someone-else"), 3, WALL)
    assert actions == [Arm(None), Close(Disconnect(4001, "subject changed"))]


def test_a_refresh_that_narrows_scopes_leaves_lost_channels_and_says_so():
    s = authed("channel:threats channel:alerts")
    s.receive(msg(type="subscribe", id=1, channels=["threats", "alerts"]), 101.0, WALL)
    actions = s.verified(principal(scopes="channel:alerts"), 9, WALL + 10)
    assert actions[0] == Leave(("threats",))
    assert sent(actions) == [
        {"type": "unsubscribed", "id": None, "channels": ["threats"]},
        {"type": "auth_ok", "id": 9, "expires_at": int(WALL + 600)},
    ]
    assert s.subscriptions == {"alerts"} and actions[-1] == Arm(WALL + 602.0 - (WALL + 10))


@pytest.mark.parametrize(
    "before,after,regroup",
    [
        ("channel:*", "channel:* events:sensitive", True),
        ("channel:* events:sensitive", "channel:*", True),  # dropping it redacts again
        ("channel:* events:sensitive", "channel:* events:sensitive alerts:ack", False),
    ],
)
def test_a_refresh_that_changes_the_redaction_class_regroups(before, after, regroup):
    s = authed(before)
    actions = s.verified(principal(scopes=after), 2, WALL)
    assert (Regroup() in actions) is regroup


# --- messages once authenticated ---


def test_binary_frames_close_1003():
    assert authed().receive(b"\x00", 101.0, WALL) == [
        Arm(None),
        Close(Disconnect(1003, "binary frames are not accepted")),
    ]


def test_ping_is_answered_with_the_wall_clock():
    assert sent(authed().receive(msg(type="ping", id="p"), 101.0, WALL + 1.5)) == [
        {"type": "pong", "id": "p", "server_time": WALL + 1.5}
    ]


def test_a_bad_message_is_an_error_reply_and_the_session_stays_open():
    s = authed()
    (fail,) = s.receive(msg(type="subscribe", id=4, channels="threats"), 101.0, WALL)
    assert isinstance(fail, Fail) and (fail.error.code, fail.error.request_id) == ("bad_request", 4)
    assert not s.closed


def test_subscribe_checks_channel_scope_and_limit_before_joining():
    s = authed("channel:threats channel:alerts")
    (unknown,) = s.receive(msg(type="subscribe", id=1, channels=["nope"]), 101.0, WALL)
    assert isinstance(unknown, Fail) and unknown.error.code == "unknown_channel"
    (forbidden,) = s.receive(msg(type="subscribe", id=2, channels=["events"]), 101.0, WALL)
    assert isinstance(forbidden, Fail) and forbidden.error.code == "forbidden"
    (join,) = s.receive(msg(type="subscribe", id=3, channels=["threats", "alerts"]), 101.0, WALL)
    assert isinstance(join, Join) and join.request == Subscribe(3, ("threats", "alerts"))
    assert s.subscriptions == {"threats", "alerts"}


def test_the_subscription_limit_counts_channels_already_held():
    s = authed()
    s.receive(msg(type="subscribe", id=1, channels=["threats", "alerts"]), 101.0, WALL)
    again = s.receive(msg(type="subscribe", id=2, channels=["threats"]), 101.0, WALL)
    assert isinstance(again[0], Join)  # a channel already held does not count twice
    (over,) = s.receive(msg(type="subscribe", id=3, channels=["events"]), 101.0, WALL)
    assert isinstance(over, Fail) and over.error.code == "too_many_subscriptions"


def test_unsubscribe_names_only_the_channels_it_was_on():
    s = authed()
    s.receive(msg(type="subscribe", id=1, channels=["threats"]), 101.0, WALL)
    actions = s.receive(msg(type="unsubscribe", id=2, channels=["threats", "alerts"]), 101.0, WALL)
    assert actions[0] == Leave(("threats",))
    assert sent(actions) == [{"type": "unsubscribed", "id": 2, "channels": ["threats"]}]
    assert s.subscriptions == set()


def test_ack_needs_the_scope_and_reports_what_the_host_did():
    (fail,) = authed().receive(msg(type="ack", id=1, alert_id="A-1"), 101.0, WALL)
    assert isinstance(fail, Fail) and fail.error.code == "forbidden"
    s = authed("channel:* alerts:ack")
    (ack,) = s.receive(msg(type="ack", id=2, alert_id="A-1", note="seen"), 101.0, WALL)
    assert isinstance(ack, Acknowledge) and ack.subject == "analyst"
    assert (ack.request.alert_id, ack.request.note) == ("A-1", "seen")
    assert sent(s.acknowledged(2, True)) == [{"type": "ack_ok", "id": 2}]
    codes = [s.acknowledged(2, outcome)[0].error.code for outcome in (None, False)]
    assert codes == ["unavailable", "ack_failed"]


def test_over_the_rate_messages_are_refused_with_their_id_then_the_session_closes_4008():
    s = authed()  # 10 per second, a burst of 10; closed past twice that
    verdicts = [s.receive(msg(type="ping", id=n), 200.0, WALL) for n in range(21)]
    assert all(isinstance(v[0], Send) for v in verdicts[:10])
    limited = verdicts[10:20]
    assert all(isinstance(v[0], Fail) and v[0].error.code == "rate_limited" for v in limited)
    assert [v[0].error.request_id for v in limited] == list(range(10, 20))
    assert verdicts[20] == [Arm(None), Close(Disconnect(4008, "message rate exceeded"))]


def test_the_rate_recovers_with_time():
    s = authed()
    for n in range(10):
        s.receive(msg(type="ping", id=n), 200.0, WALL)
    assert isinstance(s.receive(msg(type="ping", id=99), 200.0, WALL)[0], Fail)
    assert isinstance(s.receive(msg(type="ping", id=100), 201.0, WALL)[0], Send)


def test_an_outside_close_is_final_and_said_once():
    s = authed()
    assert s.close(Disconnect(4009, "slow consumer")) == [
        Arm(None),
        Close(Disconnect(4009, "slow consumer")),
    ]
    assert s.close(Disconnect(1001, "server shutting down")) == []
    assert s.receive(msg(type="ping", id=1), 101.0, WALL) == []
