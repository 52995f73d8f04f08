"""Attempted credentials over a real server: ingest (TCP and ``POST /ingest``) to WebSocket.

A token without ``events:sensitive`` must never see a secret: not live, not in a replay with
``since``, not after a refresh that drops the scope; a token with it sees every one.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ..conftest import Server, WSClient, make_token

PLAIN = "channel:events"
SENSITIVE = "channel:events events:sensitive"


def record(n: int, logtype: int, logdata: Any) -> dict[str, Any]:
    """An OpenCanary record as ``SocketJSONHandler`` writes it; ``n`` tells records apart."""
    return {
        "dst_host": "10.0.0.5",
        "dst_port": 80,
        "local_time": "2026-11-24 19:11:10.123456",
        "logdata": logdata,
        "logtype": logtype,
        "node_id": "canary-e2e",
        "src_host": "203.0.113.7",
        "src_port": 40000 + n,
        "utc_time": "2026-11-24 19:11:10.123456",
    }


def batch(tag: str) -> tuple[list[dict[str, Any]], list[str]]:
    """One record per kind of secret, each secret unique to ``tag``; (items, secrets)."""
    s = {k: f"{tag}-{k}-secret" for k in ("ssh", "qs", "snmp", "sip", "redis", "mongo", "raw")}
    s["cowrie"] = f"{tag}-cowrie-secret"
    items = [
        record(1, 4002, {"USERNAME": "root", "password": s["ssh"]}),
        record(2, 3000, {"HOSTNAME": "nas", "PATH": f"/login?user=admin&pwd={s['qs']}"}),
        record(3, 13001, {"REQUESTS": ["1.3.6.1.2.1.1.5.0"], "COMMUNITY_STRING": s["snmp"]}),
        record(
            4,
            15001,
            {"HEADERS": {"authorization": [f'Digest username="100", response="{s["sip"]}"']}},
        ),
        record(5, 17001, {"CMD": "AUTH", "ARGS": s["redis"]}),
        record(
            6,
            20001,
            {"action": "mongodb.command", "query": f"{{'createUser': 'u', 'pwd': '{s['mongo']}'}}"},
        ),
        record(7, 4002, f"USERNAME=root PASSWORD={s['raw']}"),
        {
            "id": f"{tag}-cowrie",
            "event_type": "honeypot.ssh.login_attempt",
            "severity": "high",
            "source": "cowrie",
            "data": {
                "src_ip": "203.0.113.7",
                "session": "5a1e",
                "username": "root",
                "password": s["cowrie"],
                "message": f"login attempt [root/{s['cowrie']}] failed",
            },
        },
    ]
    return items, list(s.values())


def send_tcp(server: Server, items: list[dict[str, Any]]) -> None:
    with socket.create_connection(("127.0.0.1", server.ingest_port)) as sock:
        sock.sendall(b"".join(orjson.dumps(item) + b"\n" for item in items))


async def post_webhook(server: Server, items: list[dict[str, Any]]) -> None:
    """Each item as OpenCanary's ``WebhookHandler`` wraps it: ``{"message": "<json>"}``."""
    token = make_token("opencanary", "ingest")
    for item in items:
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(
                server.http + "/ingest",
                method="POST",
                body=json.dumps({"message": json.dumps(item)}),
                headers={"Authorization": f"Bearer {token}"},
            ),
            raise_error=False,
        )
        assert response.code in (200, 202), response.body


async def received(client: WSClient, n: int) -> tuple[list[dict[str, Any]], bytes]:
    """The next ``n`` event messages and all of them serialized, to search for secrets."""
    events = await client.events(n)
    return events, b"\n".join(orjson.dumps(m) for m in events)


def assert_hidden(wire: bytes, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s.encode() in wire]
    assert not leaked, leaked
    assert b"[redacted]" in wire


def assert_shown(wire: bytes, secrets: list[str]) -> None:
    missing = [s for s in secrets if s.encode() not in wire]
    assert not missing, missing


@pytest.mark.gen_test(timeout=20)
async def test_tcp_and_webhook_secrets_only_reach_events_sensitive(server_factory):
    server = await server_factory()
    plain = await server.subscriber(["events"], make_token("soc", PLAIN))
    sensitive = await server.subscriber(["events"], make_token("ir", SENSITIVE))
    by_tcp, tcp_secrets = batch("tcp")
    by_hook, hook_secrets = batch("hook")
    send_tcp(server, by_tcp)
    await post_webhook(server, by_hook)
    n = len(by_tcp) + len(by_hook)

    events, wire = await received(plain, n)
    assert_hidden(wire, tcp_secrets + hook_secrets)
    # what happened is still there for the analyst
    for context in (b'"USERNAME":"root"', b"/login?user=admin&pwd=", b'"CMD":"AUTH"'):
        assert context in wire
    assert b"login attempt [root/[redacted]] failed" in wire
    assert b'Digest username=\\"100\\"' in wire

    _, full = await received(sensitive, n)
    assert_shown(full, tcp_secrets + hook_secrets)


@pytest.mark.gen_test(timeout=20)
async def test_a_replay_with_since_stays_redacted(server_factory):
    server = await server_factory()
    first, first_secrets = batch("live")
    client = await server.subscriber(["events"], make_token("soc", PLAIN))
    send_tcp(server, first)
    events, wire = await received(client, len(first))
    assert_hidden(wire, first_secrets)
    last = {"events": {"epoch": events[-1]["epoch"], "offset": events[-1]["offset"]}}
    client.close()

    missed, missed_secrets = batch("missed")
    send_tcp(server, missed)
    watcher = await server.subscriber(["events"], make_token("ir", SENSITIVE), since=last)
    _, full = await received(watcher, len(missed))  # the history holds them, unredacted

    resumed = await server.subscriber(["events"], make_token("soc", PLAIN), since=last)
    assert resumed.subscribed["recovered"] == {"events": True}
    replayed, wire = await received(resumed, len(missed))
    assert [m["offset"] for m in replayed] == [
        last["events"]["offset"] + i for i in range(1, len(missed) + 1)
    ]
    assert_hidden(wire, missed_secrets + first_secrets)
    assert_shown(full, missed_secrets)


@pytest.mark.gen_test(timeout=20)
async def test_a_refresh_that_drops_events_sensitive_hides_secrets_again(server_factory):
    server = await server_factory()
    client = await server.subscriber(["events"], make_token("soc", SENSITIVE))
    before, before_secrets = batch("before")
    send_tcp(server, before)
    _, full = await received(client, len(before))
    assert_shown(full, before_secrets)

    reply = await client.request({"type": "auth", "id": 2, "token": make_token("soc", PLAIN)})
    assert reply["type"] == "auth_ok"
    after, after_secrets = batch("after")
    send_tcp(server, after)
    await post_webhook(server, after)
    _, wire = await received(client, 2 * len(after))
    assert_hidden(wire, after_secrets)
