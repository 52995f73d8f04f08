"""Shared acknowledgements: an ack the host recorded is announced as an ``alert.acknowledged``
event on ``alerts``, to every subscriber on every node and into history; a refused ack is
announced nowhere."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from tests.conftest import WSClient, base_config, make_token


async def connect(url: str, sub: str, scope: str) -> WSClient:
    request = HTTPRequest(url, headers={"Authorization": f"Bearer {make_token(sub, scope)}"})
    client = WSClient(await websocket_connect(request))
    assert (await client.recv())["type"] == "welcome"
    return client


async def subscribed(url: str, sub: str, scope: str = "channel:*") -> WSClient:
    client = await connect(url, sub, scope)
    reply = await client.request({"type": "subscribe", "id": 1, "channels": ["alerts"]})
    assert reply["type"] == "subscribed", reply
    return client


def acknowledgement(message: dict[str, Any]) -> dict[str, Any]:
    assert message["channel"] == "alerts"
    event = message["event"]
    assert event["event_type"] == "alert.acknowledged"
    assert event["severity"] == "info"
    return event["data"]


@pytest.mark.redis
@pytest.mark.gen_test(timeout=30)
async def test_an_ack_on_one_node_reaches_subscribers_of_every_node(
    redis_prefixed_url, serve_process
):
    config = base_config(websocket__broker=redis_prefixed_url)
    node_a, node_b = serve_process(config), serve_process(config)
    watcher_a = await subscribed(node_a.url, "watcher-a")
    watcher_b = await subscribed(node_b.url, "watcher-b")
    analyst = await connect(node_a.url, "alice", "channel:* alerts:ack")

    reply = await analyst.request(
        {"type": "ack", "id": 7, "alert_id": "A-42", "note": "blocked at the edge"}
    )
    assert reply == {"type": "ack_ok", "id": 7}
    for watcher in (watcher_a, watcher_b):
        data = acknowledgement((await watcher.events(1))[0])
        assert (data["alert_id"], data["by"], data["note"]) == (
            "A-42",
            "alice",
            "blocked at the edge",
        )
        assert isinstance(data["at"], float)


@pytest.mark.gen_test(timeout=30)
async def test_a_refused_ack_is_announced_nowhere_and_a_recorded_one_stays_in_history(
    serve_process,
):
    node = serve_process(base_config())
    watcher = await subscribed(node.url, "watcher")
    reader = await connect(node.url, "bob", "channel:*")  # no alerts:ack

    refused = await reader.request({"type": "ack", "id": 3, "alert_id": "A-1", "note": ""})
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    analyst = await connect(node.url, "carol", "channel:alerts alerts:ack")
    assert (await analyst.request({"type": "ack", "id": 4, "alert_id": "A-2"}))["type"] == "ack_ok"

    (first,) = await watcher.events(1)  # the refused one never came
    assert acknowledgement(first)["alert_id"] == "A-2"
    assert acknowledgement(first)["by"] == "carol"

    response = await AsyncHTTPClient().fetch(
        f"{node.http}/ws/history/alerts",
        headers={"Authorization": f"Bearer {make_token('late', 'channel:alerts')}"},
    )
    events = orjson.loads(response.body)["events"]
    assert [acknowledgement(e)["alert_id"] for e in events] == ["A-2"]
