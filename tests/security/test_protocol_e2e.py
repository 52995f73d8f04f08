"""Wire protocol v1 over a real connection: the four ways to authenticate, every reply with its
request id, scopes, redaction, acknowledgements through the host's hook, refresh and expiry."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from netsentinel_websocket.hookspecs import hookimpl
from netsentinel_websocket.plugin import WebSocketPlugin
from netsentinel_websocket.runner import Runner

from ..conftest import Server, WSClient, base_config, event, make_token


async def welcomed(client: WSClient) -> dict[str, Any]:
    welcome = await client.recv()
    assert welcome["type"] == "welcome"
    return welcome


async def authenticate_by(server: Server, how: str, token: str) -> WSClient:
    if how == "header":
        return await server.connect(token)
    if how == "subprotocol":
        client = await server.connect(
            subprotocols=["netsentinel.v1", f"bearer.{token}"], authenticate=False
        )
        assert client.conn.selected_subprotocol == "netsentinel.v1"
        return client
    if how == "query":
        return await server.connect(query=f"?token={token}", authenticate=False)
    client = await server.connect(authenticate=False)
    client.send({"type": "auth", "token": token})
    return client


@pytest.mark.parametrize("how", ["header", "subprotocol", "query", "first message"])
@pytest.mark.gen_test(timeout=10)
async def test_four_ways_to_authenticate(server_factory, how):
    server = await server_factory(websocket__auth__allow_query_token=True)
    token = make_token("soc", "channel:threats", ttl=600)
    client = await authenticate_by(server, how, token)
    welcome = await welcomed(client)
    assert welcome["protocol"] == 1 and welcome["channels"] == ["threats"]
    assert welcome["node_id"] == server.node.node_id and welcome["connection_id"]
    # exactly the token's exp (comparing with server_time was off by one across a second)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert welcome["expires_at"] == claims["exp"] == claims["iat"] + 600
    assert claims["iat"] - 1 <= welcome["server_time"] <= claims["iat"] + 5
    reply = await client.request({"type": "subscribe", "id": "s", "channels": ["threats"]})
    assert reply["type"] == "subscribed"
    await server.publish(event(1))
    assert (await client.events(1))[0]["event"]["data"]["n"] == 1


@pytest.mark.gen_test(timeout=10)
async def test_first_message_auth_with_an_id_is_answered_too(server_factory):
    server = await server_factory()
    client = await server.connect(authenticate=False)
    client.send({"type": "auth", "id": 4, "token": make_token()})
    await welcomed(client)
    reply = await client.recv()
    assert reply["type"] == "auth_ok" and reply["id"] == 4


@pytest.mark.gen_test(timeout=10)
async def test_every_reply_carries_its_request_id(server_factory):
    server = await server_factory()
    token = make_token(scope="channel:threats alerts:ack")
    client = await server.connect(token)
    await welcomed(client)
    requests = [
        ({"type": "subscribe", "id": 1, "channels": ["threats"]}, "subscribed"),
        ({"type": "unsubscribe", "id": "two", "channels": ["threats"]}, "unsubscribed"),
        ({"type": "ping", "id": 3}, "pong"),
        ({"type": "auth", "id": 4, "token": token}, "auth_ok"),
        ({"type": "ack", "id": 5, "alert_id": "A-1"}, "ack_ok"),
        ({"type": "subscribe", "id": 6, "channels": ["nope"]}, "error"),
    ]
    for message, kind in requests:
        client.send(message)
        reply = await client.recv()
        assert (reply["type"], reply["id"]) == (kind, message["id"])
    assert (await client.request({"type": "ping", "id": 7}))["server_time"] > 0


@pytest.mark.gen_test(timeout=10)
async def test_subscribe_filters_apply(server_factory):
    server = await server_factory()
    client = await server.subscriber(
        ["threats"],
        filter={
            "min_severity": "high",
            "event_types": ["threat.*"],
            "src_ip": ["198.51.100.0/24"],
            "tags": ["apt"],
        },
    )
    matching = {"event_type": "threat.detected", "severity": "critical", "tags": ["apt"]}
    await server.publish({**event(1, **matching), "tags": ["apt"]})  # 203.0.113.7: filtered out
    await server.publish({**event(2, src_ip="198.51.100.9", **matching), "tags": ["other"]})
    await server.publish({**event(3, src_ip="198.51.100.9", **matching), "tags": ["apt"]})
    [got] = await client.events(1)
    assert got["event"]["data"]["n"] == 3


SECRET_EVENT = event(1, logdata={"USERNAME": "root", "PASSWORD": "hunter2"})


@pytest.mark.parametrize(
    ("scope", "password"),
    [("channel:events", "[redacted]"), ("channel:events events:sensitive", "hunter2")],
)
@pytest.mark.gen_test(timeout=10)
async def test_redaction_unless_events_sensitive(server_factory, scope, password):
    server = await server_factory()
    client = await server.subscriber(["events"], make_token(scope=scope))
    await server.publish(SECRET_EVENT)
    [got] = await client.events(1)
    assert got["event"]["data"]["logdata"] == {"USERNAME": "root", "PASSWORD": password}


@pytest.mark.gen_test(timeout=10)
async def test_refresh_can_narrow_and_widen_what_a_session_sees(server_factory):
    server = await server_factory()
    client = await server.subscriber(["events", "threats"], make_token("soc", "channel:*"))
    narrower = make_token("soc", "channel:events events:sensitive")
    client.send({"type": "auth", "id": 2, "token": narrower})
    lost = await client.recv()
    assert lost == {"type": "unsubscribed", "id": None, "channels": ["threats"]}
    assert (await client.recv())["type"] == "auth_ok"
    await server.publish(SECRET_EVENT)
    [got] = await client.events(1)
    assert got["channel"] == "events"
    assert got["event"]["data"]["logdata"]["PASSWORD"] == "hunter2"


@pytest.mark.gen_test(timeout=10)
async def test_a_refresh_moves_the_expiry(server_factory):
    server = await server_factory()
    refreshed = await server.connect(make_token("soc", ttl=2))
    left_alone = await server.connect(make_token("soc", ttl=2))
    await welcomed(refreshed)
    await welcomed(left_alone)
    reply = await refreshed.request({"type": "auth", "id": 1, "token": make_token("soc")})
    assert reply["type"] == "auth_ok" and reply["expires_at"] > time.time() + 3000
    assert await left_alone.closed(timeout=5) == (4004, "token expired")
    assert (await refreshed.request({"type": "ping", "id": 2}))["type"] == "pong"


class AckRecorder:
    """A second plugin, as a host would have, implementing the acknowledgement hook."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, str]] = []
        self.fail = fail

    @hookimpl
    def netsentinel_alert_acknowledged(self, alert_id: str, subject: str, note: str) -> None:
        if self.fail:
            raise RuntimeError("database down")
        self.calls.append({"alert_id": alert_id, "subject": subject, "note": note})


async def start_with(plugin: Any) -> tuple[Server, Runner]:
    websocket = WebSocketPlugin()
    runner = Runner(base_config(), plugins=[websocket, plugin])
    await runner.start()
    return Server(runner, websocket), runner


@pytest.mark.parametrize(
    ("fail", "reply"),
    [
        (False, {"type": "ack_ok", "id": 5}),
        (True, {"type": "error", "id": 5, "code": "ack_failed"}),
    ],
)
@pytest.mark.gen_test(timeout=10)
async def test_ack_calls_the_hosts_hook(fail, reply):
    recorder = AckRecorder(fail)
    server, runner = await start_with(recorder)
    try:
        client = await server.connect(make_token("analyst", "channel:alerts alerts:ack"))
        await welcomed(client)
        got = await client.request({"type": "ack", "id": 5, "alert_id": "A-1", "note": "fp"})
        assert {k: got[k] for k in reply} == reply
        assert recorder.calls == (
            [] if fail else [{"alert_id": "A-1", "subject": "analyst", "note": "fp"}]
        )
    finally:
        await runner.stop()


@pytest.mark.gen_test(timeout=10)
async def test_the_runner_records_acks_in_its_log(server_factory, caplog):
    server = await server_factory()
    client = await server.connect(make_token("analyst", "alerts:ack"))
    await welcomed(client)
    with caplog.at_level(logging.INFO, logger="netsentinel_websocket.runner"):
        got = await client.request({"type": "ack", "id": 1, "alert_id": "A-9", "note": "fp\nx"})
    assert got == {"type": "ack_ok", "id": 1}
    [line] = [r.getMessage() for r in caplog.records if "alert acknowledged" in r.getMessage()]
    assert line == "alert acknowledged alert_id='A-9' sub='analyst' note='fp\\nx'"  # one line


@pytest.mark.parametrize(
    ("allowed", "origin"),
    [
        ([], "http://127.0.0.1:{port}"),
        (["https://soc.example"], "https://soc.example"),
        (["https://SOC.example"], "https://soc.example"),
        (["https://soc.example"], "http://127.0.0.1:{port}"),  # same origin: the dashboard
        (["*"], "https://anywhere.example"),
    ],
)
@pytest.mark.gen_test(timeout=10)
async def test_allowed_origins(server_factory, allowed, origin):
    server = await server_factory(websocket__allowed_origins=allowed)
    headers = {"Origin": origin.format(port=server.port), "Authorization": f"Bearer {make_token()}"}
    conn = await websocket_connect(HTTPRequest(server.url, headers=headers))
    assert (await welcomed(WSClient(conn)))["type"] == "welcome"
    conn.close()
